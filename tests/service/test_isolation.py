"""One repository's config or data never stops the service: it becomes that repository's failed
run in the audit trail, and every other repository is served as usual.

Real pieces: real git repositories served by path, the real pipeline opening them (it reads
`.github/rotation-bot.yml` at the base commit exactly as a run does), the real audit store and
scheduler.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bot.audit import AuditStore
from bot.config import Settings
from bot.service.app import ServiceOptions, start_service
from bot.service.scheduler import job_id
from tests.conftest import Env
from tests.service.test_serve import pipeline_for
from tests.support.git_fixture import commit_directory

GOOD = "version: 1\nrunbooks:\n  sharp:\n    schedule: '0 7 * * *'\n"


def deep_yaml(depth: int) -> bytes:
    """`pull-requests: [[[[…]]]]`, `depth` levels deep (flow style, as an attacker writes it)."""
    return b"pull-requests:\n  labels: " + b"[" * depth + b"]" * depth + b"\n"


HOSTILE: dict[str, tuple[Callable[[], bytes], str]] = {
    "not UTF-8": (
        lambda: b"version: 1\npull-requests:\n  labels: [\xff\xfe\xfa]\n",
        ".github/rotation-bot.yml is not UTF-8 text",
    ),
    "20,000 levels deep": (
        lambda: deep_yaml(20_000),
        ".github/rotation-bot.yml nests deeper than",
    ),
    "base is a reflog expression": (
        lambda: b'pull-requests:\n  base: "main@{yesterday}"\n',
        "pull-requests.base: 'main@{yesterday}' is not a branch name",
    ),
}


def repository(path: Path, config: bytes) -> str:
    (path / ".github").mkdir(parents=True)
    (path / ".github" / "rotation-bot.yml").write_bytes(config)
    commit_directory(path)
    return str(path)


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_config_is_that_repositorys_failed_run_not_the_services(
    tmp_path: Path, env: Env, case: str
) -> None:
    make, message = HOSTILE[case]
    good = repository(tmp_path / "good", GOOD.encode())
    bad = repository(tmp_path / "bad", make())
    settings = Settings(
        listen="127.0.0.1:0",
        state_dir=env.state,
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        repositories=(bad, good),
        release_notes_url="http://127.0.0.1:9",
    )

    service = start_service(  # the defect: this raised, so `serve` never started
        settings,
        pipeline_for(settings, env, None),
        repositories=lambda: settings.repositories,
        options=ServiceOptions(shutdown_grace=5),
    )
    try:
        next_runs = service.scheduler.next_runs(good)
        assert next_runs["sharp"] is not None and next_runs["sharp"].hour == 7
        assert service.scheduler.serves(bad)
        assert not service.scheduler.next_runs(bad)  # nothing scheduled from an unusable config
        service.scheduler.refresh()  # a second look at the same config records nothing new
    finally:
        service.stop()

    audit = AuditStore(settings.resolved_database_url)
    (run,) = audit.list_runs()
    assert (run["repo"], run["trigger"], run["outcome"]) == (bad, "schedule", "error")
    assert message in run["message"], run["message"]
    assert "\n" not in run["message"] and "Traceback" not in run["message"]
    kinds = [(step["kind"], step["status"]) for step in audit.run_steps(run["id"])]
    assert kinds == [
        ("run-started", "passed"),
        ("open-repository", "failed"),
        ("run-finished", "failed"),
    ]
    assert audit.verify().ok
    assert job_id(bad, "sharp") not in service.scheduler.next_runs(good)
