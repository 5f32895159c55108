"""The audit chain detects edits and deletions anywhere, including the newest records."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import delete, update

from bot.audit import AuditStore, runs, steps


@pytest.fixture
def store(tmp_path: Path) -> AuditStore:
    audit = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    for target in ("0.33.5", "0.34.1"):
        run_id = audit.start_run(
            repo="/r", runbook="sharp", trigger="cli", actor="me", target=target
        )
        audit.append(run_id, "plan", "passed", {"target": target}, started_at=None)
        audit.append(run_id, "confirm-lockfile", "passed", {"entries": [1, 2]}, started_at=None)
        audit.finish_run(
            run_id, outcome="proposed", message="ok", proposal_title="t", proposal_body="b"
        )
    return audit


def test_intact_chain_verifies(store: AuditStore) -> None:
    report = store.verify()
    assert report.ok and report.records == 8 and report.runs == 2


def test_edited_evidence_is_detected(store: AuditStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(
            update(steps).where(steps.c.seq == 3).values(evidence='{"entries":[1,3]}')
        )
    report = store.verify()
    assert not report.ok and "record 3" in str(report.problem) and "edited" in str(report.problem)


def test_deleted_middle_record_is_detected(store: AuditStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(delete(steps).where(steps.c.seq == 2))
    assert "record 2 is missing" in str(store.verify().problem)


def test_deleted_newest_record_is_detected(store: AuditStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(delete(steps).where(steps.c.seq == 8))
    assert "newest records were removed" in str(store.verify().problem)


def test_rewritten_run_outcome_is_detected(store: AuditStore) -> None:
    with store.engine.begin() as connection:
        connection.execute(update(runs).values(outcome="failed"))
    assert "outcome differs" in str(store.verify().problem)


def test_secrets_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    from bot.errors import register_secret

    register_secret("canary-secret-value")
    audit = AuditStore(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    run_id = audit.start_run(
        repo="https://u:canary-secret-value@h/r.git", runbook="sharp", trigger="cli", actor="me"
    )
    audit.append(run_id, "x", "failed", {"stderr": "token canary-secret-value"}, started_at=None)
    assert b"canary-secret-value" not in (tmp_path / "a.sqlite3").read_bytes()
    assert audit.verify().ok
