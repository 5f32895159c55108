"""The audit store (SQLAlchemy; SQLite by default): runs, the hash-chained records, and the
proposals the local forge makes.

Every write is one transaction whose first statement locks the chain head (an UPDATE of its one
row: SQLite's write lock, a PostgreSQL row lock), so appends from several threads or processes
never fork the chain.  A `runs` row and a `proposals` row change only in the same transaction
as the chained record that says so (`run-started`, `target-set`, `run-finished`, `proposal`),
which is what lets `verify` derive and compare every column the CLI displays.  SQLite runs in
WAL mode with `synchronous=FULL`, so a commit is on disk when it returns; before every write the
database file is checked to still be the one opened (not deleted, not replaced), and
`ensure_durable` proves a durable write right before anything is published.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    inspect,
    make_url,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError, OperationalError, SQLAlchemyError

from bot.audit.anchor import EVENT, Anchor, read_anchors
from bot.audit.chain import (
    GENESIS,
    PROPOSAL_COLUMNS,
    ChainCheck,
    VerifyReport,
    body_digest,
    canonical,
    chain_hash,
)
from bot.audit.owner import ProcessIdentity, current_process, is_gone
from bot.errors import BotError, ConfigError, ServiceUnavailable, UsageError, redact, redact_data
from bot.models import utc_now

log = logging.getLogger(__name__)
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

# One counter row bumped by `ensure_durable`: a write that really changes a page (SQLite writes
# nothing for an UPDATE that changes nothing), so its commit proves the disk takes writes.
write_probe = Table(
    "write_probe",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("writes", Integer, nullable=False),
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


# The statements of an append, built once (an append is the hot path of a run and of a benchmark).
_LOCK = update(chain_head).where(chain_head.c.id == 1).values(seq=chain_head.c.seq)
_HEAD = select(chain_head.c.seq, chain_head.c.hash).where(chain_head.c.id == 1)
_LAST_SEQUENCE = (
    select(steps.c.sequence)
    .where(steps.c.run_id == bindparam("run"))
    .order_by(steps.c.sequence.desc())
    .limit(1)
)
_INSERT_RECORD = insert(steps)
_MOVE_HEAD = (
    update(chain_head)
    .where(chain_head.c.id == 1)
    .values(seq=bindparam("new_seq"), hash=bindparam("new_hash"))
)


# Database error codes (SQLite's names, PostgreSQL's SQLSTATEs) → what the user is told.
_LOCKED = ("SQLITE_BUSY", "SQLITE_LOCKED", "55P03", "40P01")
_READ_ONLY = ("SQLITE_READONLY", "25006")
_DISK = ("SQLITE_FULL", "SQLITE_IOERR", "53", "58030")
_ACCESS = ("SQLITE_CANTOPEN", "SQLITE_PERM", "SQLITE_AUTH", "28", "3D000", "42501")
_SCHEMA_LOCK = 0x726F7461756474  # pg advisory lock key: schema creation, one process at a time


def stamp(moment: datetime | None) -> str:
    """A timestamp as ISO 8601 UTC text."""
    return (moment or now()).astimezone(UTC).isoformat(timespec="milliseconds")


def create_table(table: Table, engine: Engine) -> None:
    """Create `table` (one a feature keeps in the audit database beside the chain) if missing;
    a database that refuses is a `ServiceUnavailable` naming the table."""
    try:
        table.metadata.create_all(engine)
    except SQLAlchemyError as error:
        raise ServiceUnavailable(
            f"database: cannot create the {table.name} table ({type(error).__name__}); "
            "check ROTATION_BOT_DATABASE_URL"
        ) from error


def _status_of(outcome: str) -> str:
    return "failed" if outcome in ("failed", "error", "interrupted") else "passed"


class AuditStore:
    """The audit database: runs, hash-chained records, and local-forge proposals."""

    def __init__(
        self,
        url: str,
        *,
        anchor: Anchor | None = None,
        process: ProcessIdentity | None = None,
    ) -> None:
        self.url = url
        self.anchor = anchor
        self._process = process or current_process()
        parsed = make_url(url)
        self._file = _sqlite_file(url)
        # the file, or `NAME on HOST:PORT` (never the URL: it may be a registered secret)
        self.location = (
            str(self._file)
            if self._file
            else f"{parsed.database or '-'} on {parsed.host or 'localhost'}:{parsed.port or '-'}"
        )
        self._identity: tuple[int, int] | None = None
        try:
            if self._file is not None:
                self._file.parent.mkdir(parents=True, exist_ok=True)
            self.engine: Engine = create_engine(url)
            if self.engine.dialect.name == "sqlite":
                timeout = float(str(parsed.query.get("timeout", 10)))
                event.listen(self.engine, "connect", _sqlite_pragmas(timeout))
            self._prepare_schema()
        except SQLAlchemyError as error:
            raise self._database_error(error) from error
        except OSError as error:
            raise ConfigError(
                f"audit database {self.location}: {error.strerror}; check "
                "ROTATION_BOT_DATABASE_URL and ROTATION_BOT_STATE_DIR"
            ) from error
        except ImportError as error:
            raise ConfigError(
                f"audit database {self.location} needs the {error.name} driver: "
                "pip install 'rotation-bot[postgres]'"
            ) from error
        if self._file is not None:
            self._identity = _file_identity(self._file)

    def _prepare_schema(self) -> None:
        """Create what is missing (tables, the chain head of an empty chain), serialized across
        processes that start at once; writes nothing when all is there (a read-only copy)."""
        with self.engine.connect() as connection:
            present = set(inspect(connection).get_table_names())
            ready = set(metadata.tables) <= present and (
                connection.execute(select(chain_head.c.id)).first() is not None
            )
        if ready:
            return
        with self.engine.begin() as connection:
            if self.engine.dialect.name == "sqlite":
                connection.exec_driver_sql("BEGIN IMMEDIATE")  # the write lock, before DDL
            elif self.engine.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_SCHEMA_LOCK)))
            metadata.create_all(connection)
            empty = connection.execute(select(steps.c.seq).limit(1)).first() is None
            if empty and connection.execute(select(chain_head.c.id)).first() is None:
                connection.execute(insert(chain_head).values(id=1, seq=0, hash=GENESIS))

    # --- durability --------------------------------------------------------------------------

    def _database_error(self, error: SQLAlchemyError) -> BotError:
        """A database failure as a one-line error naming the database and what to do."""
        original = error.orig if isinstance(error, DBAPIError) else None
        code = str(
            getattr(original, "sqlite_errorname", None) or getattr(original, "sqlstate", None) or ""
        )
        detail = str(original or error).strip().splitlines()
        reason = detail[0] if detail else type(error).__name__
        where = f"audit database {self.location}"
        if code.startswith(_LOCKED):
            return ServiceUnavailable(
                f"{where} is locked by another process ({reason}); retry when it is free"
            )
        if code.startswith(_READ_ONLY):
            return ConfigError(
                f"{where} is read-only ({reason}); make it writable or set "
                "ROTATION_BOT_DATABASE_URL to a writable database"
            )
        if code.startswith(_DISK):
            return ServiceUnavailable(
                f"{where} cannot be written ({reason}): the disk is full, failing or read-only; "
                "free space or fix the file system, then run again"
            )
        if code.startswith(_ACCESS):
            return ConfigError(
                f"{where} cannot be opened ({reason}); check ROTATION_BOT_DATABASE_URL, its "
                "credentials and permissions"
            )
        if code.startswith("08") or (isinstance(error, OperationalError) and not code):
            return ServiceUnavailable(f"{where} cannot be reached ({reason}); retry later")
        return ServiceUnavailable(
            f"{where} is unusable ({type(original or error).__name__}: {reason}); check "
            "ROTATION_BOT_DATABASE_URL"
        )

    def _check_file(self) -> None:
        """Raise unless the SQLite file is still the one this store opened."""
        if self._file is None or self._identity is None:
            return
        try:
            identity = _file_identity(self._file)
        except FileNotFoundError:
            raise ServiceUnavailable(
                f"audit database {self.location} was deleted while rotation-bot was using it; "
                "nothing more is published. Restore it from a backup and check it with "
                "`rotation-bot audit verify`"
            ) from None
        except OSError as error:
            raise ServiceUnavailable(
                f"audit database {self.location}: {error.strerror}; nothing more is published"
            ) from error
        if identity != self._identity:
            raise ServiceUnavailable(
                f"audit database {self.location} was replaced by another file while rotation-bot "
                "was using it; nothing more is published. Check both with "
                "`rotation-bot audit verify`"
            )

    def ensure_durable(self) -> None:
        """Raise a `BotError` unless a write reaches the audit database's disk right now and the
        anchor can be appended to: called right before anything is published."""
        with self._writing() as connection:
            bumped = connection.execute(update(write_probe).values(writes=write_probe.c.writes + 1))
            if bumped.rowcount == 0:
                connection.execute(insert(write_probe).values(id=1, writes=1))
        self._check_file()  # the commit went to the file that is still there
        if self.anchor is not None:
            self.anchor.check_writable()

    @contextmanager
    def _writing(self) -> Iterator[Connection]:
        """One write transaction holding the chain lock from its first statement."""
        self._check_file()
        try:
            with self.engine.begin() as connection:
                locked = connection.execute(_LOCK)
                if locked.rowcount != 1:
                    raise ServiceUnavailable(
                        f"audit database {self.location} has lost its chain head; nothing is "
                        "recorded or published: run `rotation-bot audit verify`"
                    )
                yield connection
        except SQLAlchemyError as error:
            raise self._database_error(error) from error

    @contextmanager
    def _reading(self, *, snapshot: bool = False) -> Iterator[Connection]:
        """A connection for reads; with `snapshot`, every statement sees the same state."""
        try:
            with self.engine.connect() as connection:
                if snapshot and self.engine.dialect.name == "sqlite":
                    connection.exec_driver_sql("BEGIN")  # pysqlite opens no read transaction
                elif snapshot:
                    connection.execution_options(isolation_level="REPEATABLE READ")
                yield connection
        except SQLAlchemyError as error:
            raise self._database_error(error) from error

    # --- writing -----------------------------------------------------------------------------

    def _append(
        self,
        connection: Connection,
        run_id: str,
        kind: str,
        status: str,
        evidence: Mapping[str, Any],
        started: str,
        finished: str,
    ) -> tuple[int, str]:
        """Append one (already redacted) record inside a `_writing` transaction."""
        head = connection.execute(_HEAD).one()
        sequence = (connection.execute(_LAST_SEQUENCE, {"run": run_id}).scalar() or 0) + 1
        record = {
            "run_id": run_id,
            "sequence": sequence,
            "kind": kind,
            "status": status,
            "started_at": started,
            "finished_at": finished,
            "evidence": evidence,
        }
        seq, digest = head.seq + 1, chain_hash(head.hash, record)
        connection.execute(
            _INSERT_RECORD,
            {
                **record,
                "seq": seq,
                "evidence": canonical(evidence),
                "previous_hash": head.hash,
                "hash": digest,
            },
        )
        connection.execute(_MOVE_HEAD, {"new_seq": seq, "new_hash": digest})
        return seq, digest

    def start_run(
        self,
        *,
        repo: str,
        runbook: str,
        trigger: str,
        actor: str,
        target: str | None = None,
    ) -> str:
        """Open a run with its `run-started` record (naming this process); returns the run id."""
        run_id = str(uuid.uuid4())
        moment = stamp(None)
        clean = redact_data(
            {
                "repo": repo,
                "runbook": runbook,
                "trigger": trigger,
                "actor": actor,
                "target": target,
                "process": self._process.as_evidence(),
            }
        )
        with self._writing() as connection:
            connection.execute(
                insert(runs).values(
                    id=run_id,
                    **{key: clean[key] for key in ("repo", "runbook", "trigger", "actor")},
                    target=clean["target"],
                    started_at=moment,
                )
            )
            self._append(connection, run_id, "run-started", "passed", clean, moment, moment)
        return run_id

    def set_target(self, run_id: str, target: str) -> None:
        """Record the target version once the plan knows it (a `target-set` record)."""
        moment = stamp(None)
        clean = redact_data({"target": target})
        with self._writing() as connection:
            connection.execute(
                update(runs).where(runs.c.id == run_id).values(target=clean["target"])
            )
            self._append(connection, run_id, "target-set", "passed", clean, moment, moment)

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
        with self._writing() as connection:
            _, digest = self._append(
                connection, run_id, kind, status, redact_data(dict(evidence)), started, finished
            )
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
        """Close a run with its `run-finished` record, fill in its `runs` row, and anchor the
        chain head.  A run that is already closed is left as it is (with a warning)."""
        self._close(
            run_id,
            outcome=outcome,
            message=message,
            proposal_title=proposal_title,
            proposal_body=proposal_body,
            proposal_url=proposal_url,
            extra=extra,
        )

    def _close(
        self,
        run_id: str,
        *,
        outcome: str,
        message: str,
        proposal_title: str | None = None,
        proposal_body: str | None = None,
        proposal_url: str | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> bool:
        """`finish_run`; returns False when the run was already closed."""
        body = redact(proposal_body) if proposal_body is not None else None
        clean = redact_data(
            {
                **(extra or {}),
                "outcome": outcome,
                "message": message,
                "proposal_title": proposal_title,
                "proposal_body_sha256": body_digest(body),
                "proposal_url": proposal_url,
            }
        )
        moment = stamp(None)
        with self._writing() as connection:
            current = connection.execute(select(runs.c.outcome).where(runs.c.id == run_id)).first()
            if current is None:
                raise UsageError(f"audit database {self.location} has no run {run_id}")
            if current.outcome is not None:
                log.warning(
                    "run already finished; not closing it again",
                    extra={"run_id": run_id, "outcome": current.outcome},
                )
                return False
            seq, digest = self._append(
                connection, run_id, "run-finished", _status_of(outcome), clean, moment, moment
            )
            connection.execute(
                update(runs)
                .where(runs.c.id == run_id)
                .values(
                    outcome=clean["outcome"],
                    message=clean["message"],
                    finished_at=moment,
                    proposal_title=clean["proposal_title"],
                    proposal_body=body,
                    proposal_url=clean["proposal_url"],
                )
            )
        if self.anchor is not None:
            self.anchor.append(seq, digest, run_id, moment)
        return True

    def close_interrupted_runs(self) -> list[str]:
        """Close, as `interrupted`, every open run whose owning process on this host is gone
        (killed, crashed, the machine rebooted); returns their ids."""
        with self._reading() as connection:
            rows = connection.execute(
                select(runs.c.id, steps.c.evidence)
                .join(steps, (steps.c.run_id == runs.c.id) & (steps.c.kind == "run-started"))
                .where(runs.c.outcome.is_(None))
            ).all()
        closed = []
        for run_id, evidence in rows:
            try:
                owner = ProcessIdentity.from_evidence(json.loads(evidence).get("process"))
            except (ValueError, AttributeError):
                owner = None
            if owner is None or not is_gone(owner, self._process):
                continue
            closed_now = self._close(
                run_id,
                outcome="interrupted",
                message=(
                    f"interrupted: its process (pid {owner.pid} on {owner.host}) ended before "
                    "the run finished; its last record shows how far it got"
                ),
                extra={
                    "owner": owner.as_evidence(),
                    "closed_by": self._process.as_evidence(),
                },
            )
            if not closed_now:
                continue  # another process closed it first
            log.warning(
                "run left open by a process that is gone, closed as interrupted",
                extra={"run_id": run_id, "pid": owner.pid, "host": owner.host},
            )
            closed.append(str(run_id))
        return closed

    # --- reading -----------------------------------------------------------------------------

    def list_runs(self, limit: int = 50) -> list[dict[str, Any]]:
        """The newest runs first."""
        with self._reading() as connection:
            rows = connection.execute(
                select(runs).order_by(runs.c.started_at.desc()).limit(limit)
            ).mappings()
            return [dict(row) for row in rows]

    def find_run(self, run_id: str) -> dict[str, Any] | None:
        """One run by id or unique id prefix."""
        with self._reading() as connection:
            rows = [
                dict(row)
                for row in connection.execute(
                    select(runs).where(runs.c.id.startswith(run_id, autoescape=True)).limit(2)
                ).mappings()
            ]
        return rows[0] if len(rows) == 1 else None

    def run_steps(self, run_id: str) -> list[dict[str, Any]]:
        """A run's records in order, evidence decoded."""
        with self._reading() as connection:
            rows = connection.execute(
                select(steps).where(steps.c.run_id == run_id).order_by(steps.c.seq)
            ).mappings()
            return [{**dict(row), "evidence": json.loads(row["evidence"])} for row in rows]

    def records(self) -> Iterator[dict[str, Any]]:
        """Every step record in chain order."""
        with self._reading() as connection:
            for row in connection.execute(select(steps).order_by(steps.c.seq)).mappings():
                yield dict(row)

    def verify(self, anchors: Sequence[Path] = ()) -> VerifyReport:
        """Recompute the chain from the first record in one consistent snapshot; compare the
        chain head, every `runs` and `proposals` row, and every head anchored in `anchors`."""
        readings = [read_anchors(path) for path in anchors]
        check = ChainCheck([head for reading in readings for head in reading.heads])
        check.problems.extend(problem for reading in readings for problem in reading.problems)
        check.problems.extend(
            f"anchor {path}: holds no {EVENT} line"
            for path, reading in zip(anchors, readings, strict=True)
            if not reading.heads and not reading.problems
        )
        with self._reading(snapshot=True) as connection:
            stream = connection.execution_options(yield_per=2000)
            for row in stream.execute(select(steps).order_by(steps.c.seq)).mappings():
                check.add(row)
            check.check_head(
                connection.execute(select(chain_head).where(chain_head.c.id == 1))
                .mappings()
                .first()
            )
            check.check_runs(connection.execute(select(runs)).mappings())
            check.check_proposals(connection.execute(select(proposals)).mappings())
        check.check_anchors()
        return check.report()

    # --- reading for the dashboard -------------------------------------------------------

    def run_index(self) -> list[dict[str, Any]]:
        """Every run, oldest first, without its proposal body (the fleet view reads them all)."""
        columns = [column for column in runs.c if column.name != "proposal_body"]
        with self._reading() as connection:
            rows = connection.execute(
                select(*columns).order_by(runs.c.started_at, runs.c.id)
            ).mappings()
            return [dict(row) for row in rows]

    def chain_head(self) -> tuple[int, str]:
        """How many records the chain holds and the newest one's hash (cheap: one row)."""
        with self._reading() as connection:
            head = connection.execute(_HEAD).one()
        return int(head.seq), str(head.hash)

    def records_of(self, run_ids: Collection[str], kinds: Collection[str]) -> list[dict[str, Any]]:
        """The records of `kinds` in the runs `run_ids`, in chain order, evidence decoded."""
        wanted = sorted(set(run_ids))
        found: list[dict[str, Any]] = []
        with self._reading() as connection:
            for start in range(0, len(wanted), 500):  # bounded IN lists for every database
                rows = connection.execute(
                    select(steps).where(
                        steps.c.run_id.in_(wanted[start : start + 500]),
                        steps.c.kind.in_(sorted(set(kinds))),
                    )
                ).mappings()
                found.extend({**dict(row), "evidence": json.loads(row["evidence"])} for row in rows)
        return sorted(found, key=lambda record: int(record["seq"]))

    # --- reading for the lifecycle (commands, limits) -----------------------------------------

    def records_for_repo(self, repo: str, kinds: Collection[str]) -> list[dict[str, Any]]:
        """The records of `kinds` in every run of `repo` (owner/name compared without case),
        in chain order, evidence decoded, each with its run's `actor`."""
        with self._reading() as connection:
            rows = connection.execute(
                select(steps, runs.c.actor, runs.c.runbook)
                .join(runs, runs.c.id == steps.c.run_id)
                .where(func.lower(runs.c.repo) == repo.lower(), steps.c.kind.in_(sorted(kinds)))
                .order_by(steps.c.seq)
            ).mappings()
            return [{**dict(row), "evidence": json.loads(row["evidence"])} for row in rows]

    def records_since(self, kind: str, since: datetime) -> list[dict[str, Any]]:
        """The records of `kind` (in any run) finished at or after `since`, evidence decoded."""
        with self._reading() as connection:
            rows = connection.execute(
                select(steps)
                .where(steps.c.kind == kind, steps.c.finished_at >= stamp(since))
                .order_by(steps.c.seq)
            ).mappings()
            return [{**dict(row), "evidence": json.loads(row["evidence"])} for row in rows]

    # --- local forge proposals -----------------------------------------------------------------

    def find_proposal(self, repo: str, branch: str) -> dict[str, Any] | None:
        """The stored proposal for `branch` in `repo`, if any."""
        with self._reading() as connection:
            row = (
                connection.execute(
                    select(proposals).where(proposals.c.repo == repo, proposals.c.branch == branch)
                )
                .mappings()
                .first()
            )
            return dict(row) if row else None

    def open_proposals(self, repo: str, runbook: str | None = None) -> list[dict[str, Any]]:
        """Open proposals in one repository (of one runbook, or of all)."""
        conditions = [proposals.c.repo == repo, proposals.c.state == "open"]
        if runbook is not None:
            conditions.append(proposals.c.runbook == runbook)
        with self._reading() as connection:
            rows = connection.execute(select(proposals).where(*conditions)).mappings()
            return [dict(row) for row in rows]

    def save_proposal(self, repo: str, values: Mapping[str, Any], *, by_run: str) -> bool:
        """Insert or update a proposal, chaining the row as written in a `proposal` record of
        run `by_run` (the run making the change); returns True when it was new."""
        moment = stamp(None)
        with self._writing() as connection:
            existing = (
                connection.execute(
                    select(proposals).where(
                        proposals.c.repo == repo, proposals.c.branch == values["branch"]
                    )
                )
                .mappings()
                .first()
            )
            row = redact_data(
                {
                    **(
                        dict(existing)
                        if existing
                        else {"created_at": moment, "superseded_by": None}
                    ),
                    **values,
                    "repo": repo,
                    "updated_at": moment,
                }
            )
            if existing:
                connection.execute(
                    update(proposals)
                    .where(proposals.c.repo == repo, proposals.c.branch == values["branch"])
                    .values(**row)
                )
            else:
                connection.execute(insert(proposals).values(**row))
            evidence = {column: row[column] for column in PROPOSAL_COLUMNS}
            evidence["body_sha256"] = body_digest(row["body"])
            self._append(connection, by_run, "proposal", "passed", evidence, moment, moment)
        return existing is None


def _sqlite_file(url: str) -> Path | None:
    """The database file of a SQLite URL (None for other databases and in-memory ones)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    database = parsed.database
    if str(parsed.query.get("uri", "")).lower() in ("true", "1"):
        if not database.startswith("file:"):
            return None
        database = database.removeprefix("file:").split("?", 1)[0]
    if database == ":memory:" or database.startswith("file::memory:"):
        return None
    return Path(database).absolute()


def _file_identity(path: Path) -> tuple[int, int]:
    status = os.stat(path)
    return status.st_dev, status.st_ino


def _sqlite_pragmas(timeout: float) -> Any:
    """The per-connection settings: WAL, commits synced to disk, and waiting on a lock."""

    def apply(connection: Any, _record: Any) -> None:
        cursor = connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        cursor.close()

    return apply
