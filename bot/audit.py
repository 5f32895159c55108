"""The audit trail: append-only, hash-chained records of every run and step (SQLAlchemy).

Each step record carries `previous_hash` and `hash = sha256(previous_hash + canonical JSON of
the record)`.  A run opens with a `run-started` record and closes with a `run-finished` record,
so its trigger, target and outcome are inside the chain too; the `runs` table is an index over
the chain and `verify` cross-checks it.  Appends serialize on a one-row `chain_head` table, which
works for several writers on SQLite and PostgreSQL alike.  Proposals made by the local forge are
kept here as well.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import ConfigError, ServiceUnavailable, redact, redact_data
from bot.models import utc_now

GENESIS = "0" * 64
now = utc_now  # the clock the audit trail stamps with
metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("repo", Text, nullable=False),
    Column("runbook", String(100), nullable=False),
    Column("trigger", String(50), nullable=False),
    Column("actor", Text, nullable=False),
    Column("target", String(100)),
    Column("outcome", String(30)),
    Column("message", Text),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40)),
    Column("proposal_title", Text),
    Column("proposal_body", Text),
    Column("proposal_url", Text),
)

steps = Table(
    "steps",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("run_id", String(36), nullable=False, index=True),
    Column("sequence", Integer, nullable=False),
    Column("kind", String(100), nullable=False),
    Column("status", String(20), nullable=False),
    Column("started_at", String(40), nullable=False),
    Column("finished_at", String(40), nullable=False),
    Column("evidence", Text, nullable=False),
    Column("previous_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False, unique=True),
)

chain_head = Table(
    "chain_head",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
)

proposals = Table(
    "proposals",
    metadata,
    Column("repo", Text, primary_key=True),
    Column("branch", String(255), primary_key=True),
    Column("runbook", String(100), nullable=False),
    Column("state", String(20), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("base_commit", String(64), nullable=False),
    Column("head_commit", String(64), nullable=False),
    Column("new_version", String(100), nullable=False),
    Column("run_id", String(36), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("superseded_by", String(255)),
)


def stamp(moment: datetime | None) -> str:
    """A timestamp as ISO 8601 UTC text."""
    return (moment or now()).astimezone(UTC).isoformat(timespec="milliseconds")


def canonical(record: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 as is."""
    return json.dumps(
        record, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str
    )


def chain_hash(previous_hash: str, record: Mapping[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of the record."""
    return hashlib.sha256((previous_hash + canonical(record)).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class VerifyReport:
    """The result of recomputing the chain."""

    ok: bool
    records: int
    runs: int
    problem: str | None = None


class AuditStore:
    """The audit database: runs, hash-chained steps, and local-forge proposals."""

    def __init__(self, url: str) -> None:
        self.url = url
        try:
            if url.startswith("sqlite:///"):
                Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url, future=True)
            if url.startswith("sqlite"):
                event.listen(self.engine, "connect", _sqlite_pragmas)
            metadata.create_all(self.engine)
            with self.engine.begin() as connection:
                if connection.execute(select(chain_head.c.id)).first() is None:
                    connection.execute(insert(chain_head).values(id=1, seq=0, hash=GENESIS))
        except SQLAlchemyError as error:
            raise ServiceUnavailable(
                f"audit database {redact(url)} is unusable ({type(error).__name__}); "
                "check ROTATION_BOT_DATABASE_URL"
            ) from error
        except OSError as error:
            raise ConfigError(f"audit database {redact(url)}: {error.strerror}") from error

    # --- writing -----------------------------------------------------------------------

    def start_run(
        self,
        *,
        repo: str,
        runbook: str,
        trigger: str,
        actor: str,
        target: str | None = None,
    ) -> str:
        """Open a run and its `run-started` record; returns the run id."""
        run_id = str(uuid.uuid4())
        started = stamp(None)
        with self.engine.begin() as connection:
            connection.execute(
                insert(runs).values(
                    id=run_id,
                    repo=redact(repo),
                    runbook=runbook,
                    trigger=trigger,
                    actor=redact(actor),
                    target=target,
                    started_at=started,
                )
            )
        self.append(
            run_id,
            "run-started",
            "passed",
            {
                "repo": repo,
                "runbook": runbook,
                "trigger": trigger,
                "actor": actor,
                "target": target,
            },
            started_at=None,
        )
        return run_id

    def set_target(self, run_id: str, target: str) -> None:
        """Record the target version once the plan knows it."""
        with self.engine.begin() as connection:
            connection.execute(update(runs).where(runs.c.id == run_id).values(target=target))

    def append(
        self,
        run_id: str,
        kind: str,
        status: str,
        evidence: Mapping[str, Any],
        *,
        started_at: datetime | None,
        finished_at: datetime | None = None,
    ) -> str:
        """Append one step record to the chain; returns its hash."""
        finished = stamp(finished_at)
        started = stamp(started_at) if started_at else finished
        clean = redact_data(dict(evidence))
        with self.engine.begin() as connection:
            # Take the write lock first (UPDATE), then read the head: no two appends interleave.
            connection.execute(
                update(chain_head).where(chain_head.c.id == 1).values(seq=chain_head.c.seq + 1)
            )
            head = connection.execute(
                select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
            ).one()
            sequence = (
                connection.execute(
                    select(steps.c.sequence)
                    .where(steps.c.run_id == run_id)
                    .order_by(steps.c.sequence.desc())
                    .limit(1)
                ).scalar()
                or 0
            ) + 1
            record = {
                "run_id": run_id,
                "sequence": sequence,
                "kind": kind,
                "status": status,
                "started_at": started,
                "finished_at": finished,
                "evidence": clean,
            }
            digest = chain_hash(head.hash, record)
            connection.execute(
                insert(steps).values(
                    seq=head.seq,
                    run_id=run_id,
                    sequence=sequence,
                    kind=kind,
                    status=status,
                    started_at=started,
                    finished_at=finished,
                    evidence=canonical(clean),
                    previous_hash=head.hash,
                    hash=digest,
                )
            )
            connection.execute(update(chain_head).where(chain_head.c.id == 1).values(hash=digest))
        return digest

    def finish_run(
        self,
        run_id: str,
        *,
        outcome: str,
        message: str,
        proposal_title: str | None = None,
        proposal_body: str | None = None,
        proposal_url: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        """Close a run with its `run-finished` record and fill in the index row."""
        body = redact(proposal_body) if proposal_body is not None else None
        evidence = {
            **(extra or {}),
            "outcome": outcome,
            "message": message,
            "proposal_title": proposal_title,
            "proposal_body_sha256": hashlib.sha256(body.encode()).hexdigest() if body else None,
            "proposal_url": proposal_url,
        }
        self.append(run_id, "run-finished", _status_of(outcome), evidence, started_at=None)
        with self.engine.begin() as connection:
            connection.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    outcome=outcome,
                    message=redact(message),
                    finished_at=stamp(None),
                    proposal_title=proposal_title,
                    proposal_body=body,
                    proposal_url=proposal_url,
                )
            )

    # --- reading -----------------------------------------------------------------------

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs first."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(runs).order_by(runs.c.started_at.desc()).limit(limit)
            ).mappings()
            return [dict(row) for row in rows]

    def find_run(self, run_id: str) -> dict[str, Any] | None:
        """One run by id or unique id prefix."""
        with self.engine.connect() as connection:
            rows = [
                dict(row)
                for row in connection.execute(
                    select(runs).where(runs.c.id.startswith(run_id, autoescape=True)).limit(2)
                ).mappings()
            ]
        return rows[0] if len(rows) == 1 else None

    def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        """A run's records in order, evidence decoded."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(steps).where(steps.c.run_id == run_id).order_by(steps.c.seq)
            ).mappings()
            return [{**dict(row), "evidence": json.loads(row["evidence"])} for row in rows]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every step record in chain order."""
        with self.engine.connect() as connection:
            for row in connection.execute(select(steps).order_by(steps.c.seq)).mappings():
                yield dict(row)

    def verify(self) -> VerifyReport:
        """Recompute the chain from the first record and cross-check the run index."""
        previous = GENESIS
        count = 0
        finished: dict[str, str] = {}
        expected_seq = 1
        for row in self.records():
            count += 1
            where = f"record {row['seq']} (run {row['run_id'][:8]}, {row['kind']})"
            if row["seq"] != expected_seq:
                return VerifyReport(False, count, 0, f"record {expected_seq} is missing")
            expected_seq += 1
            if row["previous_hash"] != previous:
                return VerifyReport(False, count, 0, f"{where}: chain broken before it")
            record = {
                "run_id": row["run_id"],
                "sequence": row["sequence"],
                "kind": row["kind"],
                "status": row["status"],
                "started_at": row["started_at"],
                "finished_at": row["finished_at"],
                "evidence": json.loads(row["evidence"]),
            }
            if chain_hash(previous, record) != row["hash"]:
                return VerifyReport(False, count, 0, f"{where}: contents were edited")
            previous = row["hash"]
            if row["kind"] == "run-finished":
                finished[row["run_id"]] = record["evidence"]["outcome"]
        with self.engine.connect() as connection:
            head = connection.execute(select(chain_head).where(chain_head.c.id == 1)).one()
            index = list(connection.execute(select(runs.c.id, runs.c.outcome)).mappings())
        if head.hash != previous or head.seq != count:
            return VerifyReport(False, count, len(index), "the newest records were removed")
        for run in index:
            if run["outcome"] is not None and finished.get(run["id"]) != run["outcome"]:
                return VerifyReport(
                    False, count, len(index), f"run {run['id'][:8]}: outcome differs from chain"
                )
        return VerifyReport(True, count, len(index))

    # --- local forge proposals ---------------------------------------------------------

    def find_proposal(self, repo: str, branch: str) -> dict[str, Any] | None:
        """The stored proposal for `branch` in `repo`, if any."""
        with self.engine.connect() as connection:
            row = (
                connection.execute(
                    select(proposals).where(proposals.c.repo == repo, proposals.c.branch == branch)
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    def open_proposals(self, repo: str, runbook: str) -> list[dict[str, Any]]:
        """Open proposals of one runbook in one repository."""
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(proposals).where(
                    proposals.c.repo == repo,
                    proposals.c.runbook == runbook,
                    proposals.c.state == "open",
                )
            ).mappings()
            return [dict(row) for row in rows]

    def save_proposal(self, repo: str, values: Mapping[str, Any]) -> bool:
        """Insert or update a proposal; returns True when it was new."""
        moment = stamp(None)
        with self.engine.begin() as connection:
            exists = connection.execute(
                select(proposals.c.branch).where(
                    proposals.c.repo == repo, proposals.c.branch == values["branch"]
                )
            ).first()
            if exists:
                connection.execute(
                    update(proposals)
                    .where(proposals.c.repo == repo, proposals.c.branch == values["branch"])
                    .values(**values, updated_at=moment)
                )
                return False
            connection.execute(
                insert(proposals).values(repo=repo, **values, created_at=moment, updated_at=moment)
            )
            return True

    # --- reading for the dashboard -------------------------------------------------------

    def run_index(self) -> list[dict[str, Any]]:
        """Every run, oldest first, without its proposal body (the fleet view reads them all)."""
        columns = [column for column in runs.c if column.name != "proposal_body"]
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(*columns).order_by(runs.c.started_at, runs.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def chain_head(self) -> tuple[int, str]:
        """How many records the chain holds and the newest one's hash (cheap: one row)."""
        with self.engine.connect() as connection:
            head = connection.execute(
                select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
            ).one()
        return int(head.seq), str(head.hash)

    def records_of(self, run_ids: Collection[str], kinds: Collection[str]) -> list[dict[str, Any]]:
        """The records of `kinds` in the runs `run_ids`, in chain order, evidence decoded."""
        wanted = sorted(set(run_ids))
        found: list[dict[str, Any]] = []
        with self.engine.connect() as connection:
            for start in range(0, len(wanted), 500):  # bounded IN lists for every database
                rows = connection.execute(
                    select(steps).where(
                        steps.c.run_id.in_(wanted[start : start + 500]),
                        steps.c.kind.in_(sorted(set(kinds))),
                    )
                ).mappings()
                found.extend({**dict(row), "evidence": json.loads(row["evidence"])} for row in rows)
        return sorted(found, key=lambda record: int(record["seq"]))


def _status_of(outcome: str) -> str:
    return "failed" if outcome in ("failed", "error", "interrupted") else "passed"


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.close()
