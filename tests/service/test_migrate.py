"""`rotation-bot migrate`: the schema on a new PostgreSQL database, and `--from` moving the
embedded mode's SQLite audit trail into it with the hash chain intact."""

from __future__ import annotations

import uuid
from pathlib import Path

from bot.audit import AuditStore
from tests.conftest import Env, bot, make_project
from tests.support.postgres import Postgres


def test_moving_from_sqlite_keeps_the_chain_and_refuses_a_second_copy(
    tmp_path: Path, env: Env, postgres: Postgres
) -> None:
    project = tmp_path / "app"
    make_project(project, env)
    ran = bot(env, "run", "--repo", str(project))  # the embedded mode: SQLite in the state dir
    assert ran.exit_code == 0, ran.output
    sqlite = f"sqlite:///{env.state / 'audit.sqlite3'}"
    before = AuditStore(sqlite).list_runs()
    assert before

    url = postgres.create_database(f"moved_{uuid.uuid4().hex[:12]}")
    moved = bot(env, "--database-url", url, "migrate", "--from", sqlite)
    assert moved.exit_code == 0, moved.output
    assert "job queue (procrastinate): schema applied" in moved.output
    assert "audit trail: verify ok" in moved.output
    after = AuditStore(url).list_runs()
    assert [(run["id"], run["outcome"]) for run in after] == [
        (run["id"], run["outcome"]) for run in before
    ]
    verified = bot(env, "--database-url", url, "audit", "verify")
    assert verified.exit_code == 0, verified.output
    # the moved chain goes on: a new run appends to it
    again = bot(env, "--database-url", url, "run", "--repo", str(project))
    assert again.exit_code == 0, again.output
    assert bot(env, "--database-url", url, "audit", "verify").exit_code == 0
    grown = len(AuditStore(url).list_runs())
    assert grown > len(after)

    twice = bot(env, "--database-url", url, "migrate", "--from", sqlite)
    assert twice.exit_code == 2
    assert "already holds records; copy into a new database" in twice.output
    assert len(AuditStore(url).list_runs()) == grown  # nothing copied over the chain
