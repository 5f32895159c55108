"""No publish without a durable audit write: commits are synced to disk, the database must still
be the file that was opened, and a real run whose database is deleted or made read-only
mid-run publishes nothing and stops with one line."""

from __future__ import annotations

import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from bot.audit import AuditStore
from bot.errors import ServiceUnavailable
from tests.audit.conftest import REPO, bot_process, database_files, finish, git_doing
from tests.conftest import Env, bot, make_project

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


def test_commits_are_written_through_the_wal_and_synced(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL


def test_a_deleted_or_replaced_database_refuses_every_further_write(tmp_path: Path) -> None:
    database = tmp_path / "audit.sqlite3"
    store = AuditStore(f"sqlite:///{database}")
    run_id = store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="alice")
    store.ensure_durable()

    for path in database_files(database):
        path.unlink(missing_ok=True)
    with pytest.raises(ServiceUnavailable, match=r"audit database .*audit\.sqlite3 was deleted"):
        store.ensure_durable()
    with pytest.raises(ServiceUnavailable, match="was deleted"):
        store.append(run_id, "plan", "passed", {}, started_at=None)

    AuditStore(f"sqlite:///{database}")  # another file now has the name
    with pytest.raises(ServiceUnavailable, match="was replaced by another file"):
        store.finish_run(run_id, outcome="failed", message="x")


@pytest.fixture
def project(tmp_path: Path, env: Env) -> git.Repo:
    return make_project(tmp_path / "app", env, config=NO_MAJOR)


def branches(repo: git.Repo) -> list[str]:
    return sorted(head.name for head in repo.heads)


def run_with_git_doing(
    env: Env, repo: git.Repo, tmp_path: Path, subcommand: str, action: str
) -> tuple[int, str, list[str]]:
    """A real `rotation-bot run` whose `git <subcommand>` first runs `action`; returns the exit
    code, the stderr and the git subcommands the run called."""
    calls = tmp_path / "git-calls"
    git_doing(tmp_path / "bin", subcommand, f'{action}; echo "$sub" >> {shlex.quote(str(calls))}')
    process = bot_process(
        env,
        "run",
        "--repo",
        str(repo.working_tree_dir),
        "--runbook",
        "sharp",
        bin_dir=tmp_path / "bin",
    )
    code, _, stderr = finish(process)
    return code, stderr, calls.read_text().split() if calls.exists() else []


def assert_one_line_error(stderr: str, expected: str) -> None:
    assert "Traceback" not in stderr
    errors = [line for line in stderr.splitlines() if line.startswith("rotation-bot:")]
    assert len(errors) == 1 and expected in errors[0], stderr


def remove(database: Path) -> str:
    return "rm -f " + " ".join(shlex.quote(str(path)) for path in database_files(database))


def test_a_database_deleted_just_before_publishing_publishes_nothing(
    tmp_path: Path, env: Env, project: git.Repo
) -> None:
    database = env.state / "audit.sqlite3"

    code, stderr, calls = run_with_git_doing(env, project, tmp_path, "commit", remove(database))

    assert "commit" in calls  # the propose step ran: the database went away inside it
    assert code == 3
    assert_one_line_error(stderr, f"audit database {database} was deleted while rotation-bot")
    assert branches(project) == ["main"]


def test_a_database_deleted_mid_run_stops_the_run_at_its_next_record(
    tmp_path: Path, env: Env, project: git.Repo
) -> None:
    database = env.state / "audit.sqlite3"

    code, stderr, calls = run_with_git_doing(env, project, tmp_path, "worktree", remove(database))

    assert code == 3
    assert_one_line_error(stderr, f"audit database {database} was deleted while rotation-bot")
    assert "commit" not in calls and branches(project) == ["main"]


@pytest.fixture
def immutable_files(tmp_path: Path) -> Iterator[list[Path]]:
    """Files the test makes immutable mid-run (`chattr +i`), released afterwards."""
    probe = tmp_path / "probe"
    probe.touch()
    if subprocess.run(["chattr", "+i", str(probe)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +i needs root and a file system with attributes")
    subprocess.run(["chattr", "-i", str(probe)], check=True)
    files: list[Path] = []
    yield files
    for path in files:
        if path.exists():
            subprocess.run(["chattr", "-i", str(path)], check=True)


def test_a_database_made_read_only_just_before_publishing_publishes_nothing(
    tmp_path: Path, env: Env, project: git.Repo, immutable_files: list[Path]
) -> None:
    database = env.state / "audit.sqlite3"
    immutable_files.extend(database_files(database)[:2])  # the file and its WAL (the shared
    # memory index is mapped: freezing it makes SQLite's next write fault, not fail)
    freeze = "chattr +i " + " ".join(shlex.quote(str(path)) for path in immutable_files)

    code, stderr, calls = run_with_git_doing(env, project, tmp_path, "commit", freeze)

    assert "commit" in calls
    assert code == 3
    assert_one_line_error(stderr, f"audit database {database} cannot be written")
    assert branches(project) == ["main"]


def test_an_anchor_that_cannot_be_written_stops_the_publish(
    tmp_path: Path, env: Env, project: git.Repo
) -> None:
    directory = tmp_path / "anchor-dir"
    directory.mkdir()
    env.extra["ROTATION_BOT_AUDIT_ANCHOR"] = str(directory)

    result = bot(env, "run", "--repo", str(project.working_tree_dir), "--runbook", "sharp")

    assert result.exit_code == 2
    assert f"step propose failed: audit anchor {directory} cannot be appended to" in result.output
    assert branches(project) == ["main"]
    assert AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}").verify().ok
    assert not os.listdir(directory)
