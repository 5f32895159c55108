"""A `rotation-bot run` that is stopped or killed leaves nothing behind: SIGTERM and SIGINT unwind
it (worktree, scratch directory and npm userconfig removed, the run recorded interrupted), and
after a SIGKILL the next run removes what the killed one left (its temporary directory, the
stale `git worktree` entry in the user's checkout) — and only what belongs to dead processes.
A run that outlives `ROTATION_BOT_RUN_TIMEOUT` stops with that reason.

Real processes, a real checkout, real npm, and Verdaccio behind a proxy that sends tarballs one
byte at a time, so each signal arrives while the bot is downloading."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from bot.audit import AuditStore
from bot.workspace import temp_root_prefix
from tests.conftest import Env, bot, make_project
from tests.support.bot_process import BotProcess, start_bot
from tests.support.slow_servers import SlowTarballs, dribbler
from tests.support.verdaccio import Verdaccio

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


@pytest.fixture
def proxy(registry: Verdaccio) -> Iterator[SlowTarballs]:
    server = SlowTarballs(registry.url, interval=0.5).start()
    try:
        yield server
    finally:
        server.stop()


class Case:
    """A checkout pinned to sharp 0.33.4, and the environment of a bot using the slow proxy."""

    def __init__(self, tmp_path: Path, env: Env, proxy: SlowTarballs, registry: Verdaccio) -> None:
        self.project = tmp_path / "app"
        self.repo = make_project(self.project, env, config=NO_MAJOR)
        self.temporary = tmp_path / "tmp"
        self.temporary.mkdir()
        self.served = Env(tmp_path / "bot", proxy.url, registry.token)
        self.environ = {**self.served.variables(), "TMPDIR": str(self.temporary)}
        self.tmp_path = tmp_path

    def run(self, name: str) -> BotProcess:
        return start_bot(
            self.tmp_path / name,
            self.environ,
            "run",
            "--repo",
            str(self.project),
            "--runbook",
            "sharp",
        )

    def runs(self) -> list[dict[str, object]]:
        return AuditStore(f"sqlite:///{self.served.state / 'audit.sqlite3'}").list_runs()

    def worktrees(self) -> int:
        return len(self.repo.git.worktree("list", "--porcelain").split("\n\n"))


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_downloads_stops_the_run_and_cleans_up(
    tmp_path: Path, env: Env, proxy: SlowTarballs, registry: Verdaccio, signum: int
) -> None:
    case = Case(tmp_path, env, proxy, registry)
    run = case.run("run")
    assert proxy.tarball_started.wait(120), run.output()
    assert len(list(case.temporary.iterdir())) == 1  # the run's own temporary directory

    run.signal(signum)

    assert run.finish() == 128 + signum, run.output()
    assert run.output().strip().splitlines()[-1] == (
        f"rotation-bot: interrupted: {signal.Signals(signum).name} received: the run was "
        "stopped and recorded interrupted, its worktree removed; nothing was published"
    )
    assert "Traceback" not in run.output()
    assert list(case.temporary.iterdir()) == []  # worktree, scratch and npm userconfig gone
    assert case.worktrees() == 1
    assert [head.name for head in git.Repo(case.project).heads] == ["main"]
    (record,) = case.runs()
    assert (record["outcome"], record["message"]) == ("interrupted", "interrupted (SignalReceived)")


def test_the_next_run_removes_what_a_killed_run_left_and_only_that(
    tmp_path: Path, env: Env, proxy: SlowTarballs, registry: Verdaccio
) -> None:
    case = Case(tmp_path, env, proxy, registry)
    killed = case.run("killed")
    assert proxy.tarball_started.wait(120), killed.output()
    killed.signal(signal.SIGKILL)
    killed.finish()
    (left,) = case.temporary.iterdir()
    assert left.name.startswith(temp_root_prefix(killed.process.pid))
    assert case.worktrees() == 2  # the killed run's worktree is still registered
    alive = case.temporary / f"{temp_root_prefix(1)}someone-elses"  # pid 1 is alive
    alive.mkdir()
    foreign = case.temporary / "rotation-bot-0123abcd-scratch-xyz"  # not a process root
    foreign.mkdir()
    proxy.interval = 0  # the registry is fast again

    again = case.run("again")

    assert again.finish() == 0, again.output()
    assert sorted(path.name for path in case.temporary.iterdir()) == sorted(
        [alive.name, foreign.name]
    )
    assert case.worktrees() == 1
    assert "rotation-bot/sharp-0.33.6" in [head.name for head in git.Repo(case.project).heads]


def test_a_run_that_outlives_its_deadline_is_stopped_with_that_reason(
    tmp_path: Path, env: Env
) -> None:
    repo = make_project(tmp_path / "app", env, config=NO_MAJOR)
    with dribbler(length=10_000, interval=0.5) as notes:  # release notes that never finish
        env.extra.update(
            {"ROTATION_BOT_RELEASE_NOTES_URL": notes.url, "ROTATION_BOT_RUN_TIMEOUT": "15s"}
        )
        result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")
        assert notes.started.is_set()

    assert result.exit_code == 1, result.output
    assert result.output.strip().splitlines()[-1] == (
        "rotation-bot: interrupted: the run took longer than its 15s deadline "
        "(ROTATION_BOT_RUN_TIMEOUT); stopped, nothing was published"
    )
    (run,) = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}").list_runs()
    assert (run["outcome"], run["message"]) == ("interrupted", "interrupted (RunDeadlineExceeded)")
    assert len(repo.git.worktree("list").splitlines()) == 1
    assert [head.name for head in repo.heads] == ["main"]
