"""A locked, read-only or full audit database is a one-line error with the exit code of
bot/errors.py, never a traceback; and the trail stays verifiable afterwards."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import git
import psycopg
import pytest
from sqlalchemy import Engine, create_engine

from bot.audit import AuditStore
from bot.errors import ConfigError, ServiceUnavailable
from bot.service.webhook import DeliveryLog
from bot.watchers.base_images import DigestSightings
from tests.audit.conftest import bot_process, finish
from tests.conftest import Env, bot, make_project
from tests.support.postgres import Postgres
from tests.support.processes import free_port

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


def project(tmp_path: Path, env: Env) -> git.Repo:
    return make_project(tmp_path / "app", env, config=NO_MAJOR)


def error_lines(output: str) -> list[str]:
    assert "Traceback" not in output
    return [line for line in output.splitlines() if line.startswith("rotation-bot:")]


def test_a_locked_database_is_exit_3_with_one_line(tmp_path: Path, env: Env) -> None:
    repo = project(tmp_path, env)
    database = tmp_path / "audit.sqlite3"
    AuditStore(f"sqlite:///{database}").engine.dispose()
    env.extra["ROTATION_BOT_DATABASE_URL"] = f"sqlite:///{database}?timeout=0.2"
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        result = bot(env, "run", "--repo", str(repo.working_tree_dir), "--runbook", "sharp")
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    assert result.exit_code == 3
    assert error_lines(result.output) == [
        f"rotation-bot: unavailable: audit database {database} is locked by another process "
        "(database is locked); retry when it is free"
    ]
    assert [head.name for head in repo.heads] == ["main"]


def test_a_read_only_database_is_exit_2_for_runs_and_still_verifies(
    tmp_path: Path, env: Env
) -> None:
    repo = project(tmp_path, env)
    database = tmp_path / "audit.sqlite3"
    writer = AuditStore(f"sqlite:///{database}")
    run_id = writer.start_run(repo="/srv/app", runbook="sharp", trigger="cli", actor="alice")
    writer.finish_run(run_id, outcome="nothing-to-do", message="nothing to rotate")
    writer.engine.dispose()
    env.extra["ROTATION_BOT_DATABASE_URL"] = f"sqlite:///file:{database}?mode=ro&uri=true"

    result = bot(env, "run", "--repo", str(repo.working_tree_dir), "--runbook", "sharp")
    verified = bot(env, "audit", "verify")

    assert result.exit_code == 2
    (line,) = error_lines(result.output)
    assert line.startswith(f"rotation-bot: config: audit database {database} is read-only")
    assert verified.exit_code == 0 and verified.output.startswith("ok: 2 records in 1 runs")


def test_a_full_disk_is_exit_3_with_one_line_and_the_trail_survives(
    tmp_path: Path, env: Env
) -> None:
    repo = project(tmp_path, env)
    # the file size limit makes every write past 96 KiB fail as on a full disk
    process = bot_process(
        env,
        "run",
        "--repo",
        str(repo.working_tree_dir),
        "--runbook",
        "sharp",
        prefix=("prlimit", f"--fsize={96 * 1024}"),
    )
    code, _, stderr = finish(process)

    assert code == 3, stderr
    (line,) = error_lines(stderr)
    assert line.startswith(
        f"rotation-bot: unavailable: audit database {env.state / 'audit.sqlite3'} cannot be "
        "written (disk I/O error): the disk is full"
    )
    assert [head.name for head in repo.heads] == ["main"]

    again = bot(env, "run", "--repo", str(repo.working_tree_dir), "--runbook", "sharp")
    assert again.exit_code == 0, again.output
    assert bot(env, "audit", "verify").exit_code == 0
    outcomes = [
        run["outcome"] for run in AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}").list_runs()
    ]
    assert "proposed" in outcomes and None not in outcomes


def test_postgres_read_only_or_unreachable_is_a_one_line_error(
    postgres: Postgres, tmp_path: Path
) -> None:
    name = f"ro_{tmp_path.name.lower()}"[:60]
    url = postgres.create_database(name)
    AuditStore(url).engine.dispose()
    with psycopg.connect(postgres.admin_dsn(name), autocommit=True) as connection:
        connection.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
    store = AuditStore(url)

    with pytest.raises(ConfigError, match=r"audit database .* is read-only \(cannot execute"):
        store.start_run(repo="/srv/app", runbook="sharp", trigger="cli", actor="alice")
    assert store.verify().ok  # reading still works

    env = Env(tmp_path, "http://127.0.0.1:9/", "unused")
    port = free_port()
    env.extra["ROTATION_BOT_DATABASE_URL"] = (
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/nowhere"
    )
    result = bot(env, "audit", "list")
    assert result.exit_code == 3
    (line,) = error_lines(result.output)
    assert line.startswith(
        f"rotation-bot: unavailable: audit database nowhere on 127.0.0.1:{port} cannot be reached"
    )


@pytest.mark.parametrize(
    ("open_table", "name"),
    [(DeliveryLog, "webhook_deliveries"), (DigestSightings, "digest_sightings")],
)
def test_a_side_table_the_database_refuses_is_a_one_line_error_naming_it(
    tmp_path: Path, open_table: Callable[[Engine], object], name: str
) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'missing-directory' / 'audit.sqlite3'}")

    with pytest.raises(ServiceUnavailable) as raised:
        open_table(engine)

    assert str(raised.value) == (
        f"database: cannot create the {name} table (OperationalError); "
        "check ROTATION_BOT_DATABASE_URL"
    )
