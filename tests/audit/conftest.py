"""Audit trails to attack: a small trail written through the real store and local forge, the
attacker's tools (edit a table, rebuild the chain with recomputed hashes), and a `git` on PATH
that does something to the database at a chosen moment of a real `rotation-bot run`."""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select, update

from bot.audit import GENESIS, Anchor, AuditStore, chain_head, steps
from bot.audit.chain import stored_hash
from bot.forges.local import LocalForge
from bot.models import Proposal
from tests.conftest import Env

REPO = "/srv/app"


@dataclass(frozen=True)
class Trail:
    """Three runs written through the real store: two proposals (the second supersedes the
    first) and, newest, a run with nothing to do; every finished run anchored."""

    store: AuditStore
    database: Path
    anchor: Path
    first: str
    second: str
    newest: str

    def url(self) -> str:
        return f"sqlite:///{self.database}"

    def problems(self, *, anchored: bool = False) -> list[str]:
        """What verify finds, read through a fresh store (as `audit verify` would)."""
        store = AuditStore(self.url())
        return list(store.verify([self.anchor] if anchored else []).problems)


def _propose(forge: LocalForge, store: AuditStore, version: str, previous: str | None) -> str:
    run_id = store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="alice")
    store.append(run_id, "plan", "passed", {"rotations": [version]}, started_at=None)
    store.set_target(run_id, version)
    store.append(run_id, "confirm-lockfile", "passed", {"entries": [1, 2]}, started_at=None)
    proposal = Proposal(
        branch=f"rotation-bot/sharp-{version}",
        title=f"Rotate sharp {previous} → {version}",
        body=f"## sharp {version}\n\n| pin | integrity |\n| --- | --- |\n",
        base_branch="main",
        base_commit="a" * 40,
        head_commit=version.replace(".", "") * 8,
        runbook="sharp",
        new_version=version,
        run_id=run_id,
    )
    published = forge.ensure_proposal(REPO, proposal, supersedes_prefix="rotation-bot/sharp-0.33.")
    store.finish_run(
        run_id,
        outcome="proposed",
        message=f"proposed {proposal.branch}",
        proposal_title=proposal.title,
        proposal_body=proposal.body,
        proposal_url=published.url,
    )
    return run_id


def build_trail(directory: Path, anchor_name: str = "anchor.log") -> Trail:
    """The trail described on `Trail`, in `directory`."""
    database, anchor = directory / "audit.sqlite3", directory / anchor_name
    store = AuditStore(f"sqlite:///{database}", anchor=Anchor(anchor))
    forge = LocalForge(store)
    first = _propose(forge, store, "0.33.5", "0.33.4")
    second = _propose(forge, store, "0.33.6", "0.33.4")
    newest = store.start_run(repo=REPO, runbook="sharp", trigger="schedule", actor="schedule")
    store.append(newest, "plan", "passed", {"rotations": []}, started_at=None)
    store.finish_run(newest, outcome="nothing-to-do", message="nothing to rotate")
    return Trail(store, database, anchor, first, second, newest)


@pytest.fixture
def trail(tmp_path: Path) -> Trail:
    return build_trail(tmp_path)


def tamper(store: AuditStore, *statements: Any) -> None:
    """Run SQL against the database, as anyone who can write the file can."""
    with store.engine.begin() as connection:
        for statement in statements:
            connection.execute(statement)


def rewrite_chain(
    store: AuditStore, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]]
) -> None:
    """The attacker's rebuild: change the records, recompute every hash and the chain head."""
    with store.engine.begin() as connection:
        rows = [
            dict(row) for row in connection.execute(select(steps).order_by(steps.c.seq)).mappings()
        ]
        rows = change(rows)
        connection.execute(delete(steps))
        previous = GENESIS
        for number, row in enumerate(rows, start=1):
            row.update(seq=number, previous_hash=previous)
            row["hash"] = previous = stored_hash(row)
            connection.execute(insert(steps).values(**row))
        connection.execute(update(chain_head).values(seq=len(rows), hash=previous))


# --- a real `rotation-bot run` with something happening at a chosen git command --------------


def git_doing(bin_dir: Path, subcommand: str, action: str) -> None:
    """Put a `git` first on PATH that runs the shell `action` when the bot runs `git
    <subcommand>`, then the real git (options such as `-c k=v` before the subcommand skipped)."""
    real = shutil.which("git")
    assert real is not None
    bin_dir.mkdir(parents=True, exist_ok=True)
    script = bin_dir / "git"
    script.write_text(
        "#!/bin/sh\n"
        'sub=""; skip=0\n'
        'for arg in "$@"; do\n'
        '  if [ "$skip" = 1 ]; then skip=0; continue; fi\n'
        '  case "$arg" in -c|-C) skip=1;; -*) ;; *) sub="$arg"; break;; esac\n'
        "done\n"
        f'if [ "$sub" = {shlex.quote(subcommand)} ]; then {action}; fi\n'
        f'exec {shlex.quote(real)} "$@"\n'
    )
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def database_files(database: Path) -> list[Path]:
    """The SQLite file with its WAL and shared-memory files."""
    return [
        database,
        database.with_name(database.name + "-wal"),
        database.with_name(database.name + "-shm"),
    ]


def bot_process(
    env: Env,
    *args: str,
    bin_dir: Path | None = None,
    extra: Mapping[str, str] | None = None,
    prefix: tuple[str, ...] = (),
) -> subprocess.Popen[str]:
    """Start the real `rotation-bot` command (its own session) with the test environment."""
    variables = {**env.variables(), **(extra or {})}
    if bin_dir is not None:
        variables["PATH"] = f"{bin_dir}:{variables['PATH']}"
    return subprocess.Popen(
        [*prefix, sys.executable, "-m", "bot", *args],
        env=variables,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
    )


def finish(process: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str, str]:
    """Wait for the process; (exit code, stdout, stderr)."""
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, 9)
            process.wait()
    return process.returncode, stdout, stderr
