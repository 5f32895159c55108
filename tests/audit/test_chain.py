"""`verify` finds every way of changing the trail short of a full rebuild, names the record or
run, and with an anchor finds the rebuild and the truncation too."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, update

from bot.audit import AuditStore, proposals, runs, steps
from bot.audit.chain import PROPOSAL_COLUMNS, RUN_COLUMNS
from bot.errors import register_secret
from tests.audit.conftest import REPO, Trail, rewrite_chain, tamper


def test_an_intact_trail_verifies_with_its_anchor(trail: Trail) -> None:
    report = AuditStore(trail.url()).verify([trail.anchor])
    assert report.ok, report.problems
    assert (report.records, report.runs) == (16, 3)
    assert report.anchored == 3 and report.newest_anchored == report.records


def test_every_displayed_column_is_chained() -> None:
    # a column added to runs or proposals without being chained would escape verify
    assert {column.name for column in runs.columns} == {"id", "proposal_body", *RUN_COLUMNS}
    assert {column.name for column in proposals.columns} == {"body", *PROPOSAL_COLUMNS}


# --- records ------------------------------------------------------------------------------


def test_edited_evidence_names_the_record(trail: Trail) -> None:
    tamper(trail.store, update(steps).where(steps.c.seq == 3).values(evidence='{"target":"9.9.9"}'))
    assert trail.problems() == [
        f"record 3 (run {trail.first[:8]}, target-set): contents were edited"
    ]


def test_evidence_rewritten_to_an_equal_value_is_still_an_edit(trail: Trail) -> None:
    (record,) = [r for r in trail.store.records() if r["seq"] == 4]
    spaced = json.dumps(json.loads(record["evidence"]), indent=1)  # same value, other text
    tamper(trail.store, update(steps).where(steps.c.seq == 4).values(evidence=spaced))
    assert trail.problems() == [
        f"record 4 (run {trail.first[:8]}, confirm-lockfile): contents were edited"
    ]


def test_a_deleted_middle_record_is_named(trail: Trail) -> None:
    tamper(trail.store, delete(steps).where(steps.c.seq == 4))
    assert trail.problems() == [
        "record 4 is missing (deleted)",
        f"record 5 (run {trail.first[:8]}, proposal): sequence 5 where 4 was due",
    ]


def test_deleted_newest_records_are_found_from_the_head(trail: Trail) -> None:
    tamper(trail.store, delete(steps).where(steps.c.seq >= 15))
    problems = trail.problems()
    assert problems[0] == (
        "the chain head names record 16 but the chain ends at record 14: the newest records "
        "were removed"
    )
    # and the newest run's row now shows what its missing records said
    assert problems[1:] and all(p.startswith(f"run {trail.newest[:8]}: ") for p in problems[1:])


def test_a_deleted_chain_head_row_is_found(trail: Trail) -> None:
    from bot.audit import chain_head

    tamper(trail.store, delete(chain_head))
    assert trail.problems() == ["the chain head row was deleted"]


# --- runs rows ----------------------------------------------------------------------------

EDITS: dict[str, Any] = {
    "repo": "/srv/other",
    "runbook": "base-image",
    "trigger": "chat",
    "actor": "mallory",
    "target": "0.33.9",
    "outcome": "failed",
    "message": "nothing happened here",
    "started_at": "2020-01-01T00:00:00.000+00:00",
    "finished_at": "2020-01-01T00:00:01.000+00:00",
    "proposal_title": "Rotate sharp to something else",
    "proposal_url": "https://example.invalid/pr/1",
    "proposal_body": "## a body the chain never saw",
}


@pytest.mark.parametrize("column", sorted(EDITS))
def test_an_edited_runs_column_is_named(trail: Trail, column: str) -> None:
    tamper(
        trail.store, update(runs).where(runs.c.id == trail.second).values({column: EDITS[column]})
    )
    problems = trail.problems()
    assert len(problems) == 1 and problems[0].startswith(
        f"run {trail.second[:8]}: {column} differs"
    )


@pytest.mark.parametrize("column", ["outcome", "message", "finished_at", "target", "proposal_body"])
def test_a_nulled_runs_column_is_named(trail: Trail, column: str) -> None:
    tamper(trail.store, update(runs).where(runs.c.id == trail.first).values({column: None}))
    assert trail.problems()[0].startswith(f"run {trail.first[:8]}: {column} differs")


def test_an_outcome_given_to_an_unfinished_run_is_named(trail: Trail) -> None:
    open_run = trail.store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="alice")
    tamper(trail.store, update(runs).where(runs.c.id == open_run).values(outcome="proposed"))
    assert trail.problems() == [
        f"run {open_run[:8]}: outcome differs from the chain ('proposed' shown, None chained)"
    ]


def test_a_deleted_runs_row_is_named(trail: Trail) -> None:
    tamper(trail.store, delete(runs).where(runs.c.id == trail.first))
    assert trail.problems() == [
        f"run {trail.first[:8]}: its runs row was deleted (the chain holds 6 records of it, "
        "from record 1)"
    ]


def test_a_runs_row_without_run_started_is_named(trail: Trail) -> None:
    forged = "f0f0f0f0-0000-4000-8000-000000000000"
    tamper(
        trail.store,
        insert(runs).values(
            id=forged,
            repo=REPO,
            runbook="sharp",
            trigger="cli",
            actor="alice",
            started_at="2026-01-01T00:00:00.000+00:00",
            outcome="proposed",
        ),
    )
    assert trail.problems() == ["run f0f0f0f0: has no run-started record in the chain"]


def test_a_run_whose_run_started_record_was_cut_out_is_named_even_after_a_rebuild(
    trail: Trail,
) -> None:
    def drop_start(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        kept = [r for r in rows if not (r["run_id"] == trail.second and r["kind"] == "run-started")]
        for row in kept:
            if row["run_id"] == trail.second:
                row["sequence"] -= 1
        return kept

    rewrite_chain(trail.store, drop_start)
    problems = trail.problems()
    assert problems[0].startswith(f"run {trail.second[:8]}: has no run-started record (its first")


# --- proposals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("state", "open"),
        ("title", "forged"),
        ("body", "forged body"),
        ("head_commit", "f" * 40),
        ("superseded_by", None),
        ("run_id", "someone-else"),
    ],
)
def test_an_edited_proposal_is_named(trail: Trail, column: str, value: Any) -> None:
    branch = "rotation-bot/sharp-0.33.5"  # superseded by the second run
    tamper(
        trail.store,
        update(proposals).where(proposals.c.branch == branch).values({column: value}),
    )
    assert (
        trail.problems()
        == [
            problem
            for problem in trail.problems()
            if problem.startswith(f"proposal {REPO} {branch}: {column} differs")
        ]
        != []
    )


def test_a_deleted_or_forged_proposal_row_is_named(trail: Trail) -> None:
    tamper(
        trail.store,
        delete(proposals).where(proposals.c.branch == "rotation-bot/sharp-0.33.6"),
        insert(proposals).values(
            repo=REPO,
            branch="rotation-bot/sharp-0.99.0",
            runbook="sharp",
            state="open",
            title="t",
            body="b",
            base_commit="",
            head_commit="",
            new_version="0.99.0",
            run_id=trail.second,
            created_at="x",
            updated_at="x",
        ),
    )
    assert sorted(trail.problems()) == [
        f"proposal {REPO} rotation-bot/sharp-0.33.6: its row was deleted",
        f"proposal {REPO} rotation-bot/sharp-0.99.0: not in the chain",
    ]


def test_every_problem_is_its_own_line(trail: Trail) -> None:
    tamper(
        trail.store,
        update(runs).where(runs.c.id == trail.first).values(actor="mallory"),
        update(runs).where(runs.c.id == trail.second).values(outcome=None),
        update(steps).where(steps.c.seq == 15).values(status="skipped"),
    )
    problems = trail.problems()
    assert len(problems) == 3 and all("\n" not in problem for problem in problems)


# --- what only the anchor finds -----------------------------------------------------------


def test_truncating_the_newest_run_and_its_head_is_found_only_with_the_anchor(
    trail: Trail,
) -> None:
    newest_records = [r for r in trail.store.records() if r["run_id"] == trail.newest]
    rewrite_chain(trail.store, lambda rows: [r for r in rows if r["run_id"] != trail.newest])
    tamper(trail.store, delete(runs).where(runs.c.id == trail.newest))

    assert trail.problems() == []  # consistent without the anchor: the chain alone cannot tell
    (problem,) = trail.problems(anchored=True)
    assert problem == (
        f"anchor {trail.anchor}:3: record {newest_records[-1]['seq']} is not in the chain, which "
        f"ends at record {newest_records[0]['seq'] - 1}: records were removed or the database "
        "was replaced"
    )


def test_a_rebuilt_chain_with_recomputed_hashes_is_found_only_with_the_anchor(
    trail: Trail,
) -> None:
    def forge_outcome(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        for row in rows:
            if row["run_id"] == trail.first and row["kind"] == "run-finished":
                evidence = json.loads(row["evidence"])
                row["evidence"] = json.dumps({**evidence, "outcome": "failed"})
        return rows

    rewrite_chain(trail.store, forge_outcome)
    tamper(trail.store, update(runs).where(runs.c.id == trail.first).values(outcome="failed"))

    assert trail.problems() == []
    problems = trail.problems(anchored=True)
    assert len(problems) == 3  # every head anchored since the forged record
    assert problems[0].startswith(f"anchor {trail.anchor}:1: record 6 hashes to ")
    assert problems[0].endswith("the chain was rewritten")


def test_a_deleted_database_is_not_an_empty_trail_when_an_anchor_remembers_it(
    trail: Trail,
) -> None:
    trail.store.engine.dispose()
    for path in trail.database.parent.glob("audit.sqlite3*"):
        path.unlink()

    report = AuditStore(trail.url()).verify([trail.anchor])

    assert not report.ok and report.records == 0
    assert report.problems[0] == (
        f"anchor {trail.anchor}:1: record 6 is not in the chain, which ends at record 0: "
        "records were removed or the database was replaced"
    )


def test_secrets_are_redacted_before_they_are_stored(tmp_path: Path) -> None:
    register_secret("canary-secret-value")
    audit = AuditStore(f"sqlite:///{tmp_path / 'a.sqlite3'}")
    run_id = audit.start_run(
        repo="https://u:canary-secret-value@h/r.git", runbook="sharp", trigger="cli", actor="me"
    )
    audit.append(run_id, "x", "failed", {"stderr": "token canary-secret-value"}, started_at=None)
    audit.finish_run(run_id, outcome="failed", message="canary-secret-value", proposal_body="x")
    audit.engine.dispose()
    stored = b"".join(path.read_bytes() for path in tmp_path.glob("a.sqlite3*"))
    assert b"canary-secret-value" not in stored
    assert AuditStore(f"sqlite:///{tmp_path / 'a.sqlite3'}").verify().ok
