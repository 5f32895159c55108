"""Runs left `running` by a process that is gone are closed as interrupted, with a chained
record naming that process; runs of live processes and of other hosts are left alone."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

from bot.audit import AuditStore, current_process
from tests.audit.conftest import REPO, bot_process, finish, git_doing
from tests.conftest import Env, bot, make_project
from tests.support.service import wait_until

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


def start_in_another_process(url: str) -> str:
    """A run opened by a real process that then exits without finishing it."""
    script = (
        "from bot.audit import AuditStore; "
        f"print(AuditStore({url!r}).start_run(repo='/srv/exited', runbook='sharp', "
        "trigger='cli', actor='alice'))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_only_runs_whose_process_is_gone_are_closed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    here = current_process()
    assert here.start_time is not None and here.boot_id is not None

    def open_run(**identity: object) -> str:
        store = AuditStore(url, process=replace(here, **identity))  # type: ignore[arg-type]
        return store.start_run(repo=REPO, runbook="sharp", trigger="schedule", actor="cron")

    exited = start_in_another_process(url)
    live = open_run()
    elsewhere = open_run(host="worker-2.internal", pid=1)
    rebooted = open_run(boot_id="00000000-0000-4000-8000-000000000000")
    reused_pid = open_run(start_time=here.start_time + 1)  # this pid, but another process
    store = AuditStore(url)

    closed = store.close_interrupted_runs()

    assert sorted(closed) == sorted([exited, rebooted, reused_pid])
    outcomes = {run["id"]: run["outcome"] for run in store.list_runs()}
    assert outcomes == {
        exited: "interrupted",
        rebooted: "interrupted",
        reused_pid: "interrupted",
        live: None,
        elsewhere: None,
    }
    finished = store.run_steps(exited)[-1]
    assert finished["kind"] == "run-finished" and finished["status"] == "failed"
    assert finished["evidence"]["owner"]["host"] == here.host
    assert finished["evidence"]["closed_by"]["pid"] == os.getpid()
    assert store.close_interrupted_runs() == []  # closed once
    assert store.verify().ok


def test_a_run_killed_mid_flight_is_closed_by_the_next_run(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(path, env, config=NO_MAJOR)
    reached, fifo = tmp_path / "reached", tmp_path / "hold"
    os.mkfifo(fifo)
    git_doing(
        tmp_path / "bin",
        "worktree",
        f"[ -e {shlex.quote(str(reached))} ] || {{ touch {shlex.quote(str(reached))}; "
        f"cat {shlex.quote(str(fifo))} >/dev/null; }}",
    )
    process = bot_process(
        env, "run", "--repo", str(path), "--runbook", "sharp", bin_dir=tmp_path / "bin"
    )
    try:
        wait_until(
            lambda: reached.exists() or process.poll() is not None,
            timeout=120,
            message="the run to reach `git worktree add`",
        )
        assert process.poll() is None, finish(process)
        os.kill(process.pid, signal.SIGKILL)  # only the bot: as the OOM killer would
        process.wait(timeout=30)
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # the git wrapper still waiting on the fifo
        process.wait(timeout=30)
    store = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}")
    (killed,) = store.list_runs()
    assert killed["outcome"] is None
    assert "running" in bot(env, "audit", "list").output

    again = bot(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert again.exit_code == 0, again.output
    runs = {run["id"]: run for run in store.list_runs()}
    assert runs[killed["id"]]["outcome"] == "interrupted"
    assert f"pid {process.pid} on " in runs[killed["id"]]["message"]
    last = store.run_steps(killed["id"])[-1]
    assert last["kind"] == "run-finished" and last["evidence"]["owner"]["pid"] == process.pid
    assert [run["outcome"] for run in runs.values() if run["id"] != killed["id"]] == ["proposed"]
    verified = bot(env, "audit", "verify")
    assert verified.exit_code == 0 and "2 anchored heads match" in verified.output
    assert killed["id"] in (env.state / "audit-anchor.log").read_text()
    # the log lines the run wrote to stderr are an anchor too
    log = tmp_path / "stderr.log"
    log.write_text(again.stderr)
    from_log = bot(env, "audit", "verify", "--anchor", str(log))
    assert from_log.exit_code == 0 and "2 anchored heads match" in from_log.output
