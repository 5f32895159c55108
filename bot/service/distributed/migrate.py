"""`rotation-bot migrate`: every table the service uses, created where missing; with `--from`,
the embedded mode's audit trail copied in (moving from SQLite to PostgreSQL).

The audit trail creates its own tables (opening the store does); this adds the webhook delivery
log, the no-op memos (bot/unchanged.py), and on PostgreSQL the fleet's packument cache and
request budgets and procrastinate's schema (applied when its job table is absent; a later
procrastinate version's migrations are applied with its own tooling, see deploy/README.md).
Safe to run again, and from several processes at once (the schema is applied under a
transaction-scoped advisory lock).

`copy_trail` copies every row of the audit tables as stored (ids, timestamps, evidence text,
hashes), so the chain verifies the same in the new database; it refuses a target that already
holds records rather than fork the chain.
"""

from __future__ import annotations

import psycopg
from sqlalchemy import create_engine, delete, func, insert, select

from bot.audit import AuditStore
from bot.audit.store import chain_head, metadata, steps, write_probe
from bot.config import Settings
from bot.errors import UsageError
from bot.service.distributed.fleet import conninfo
from bot.service.distributed.shared import create_tables
from bot.service.webhook import DeliveryLog
from bot.unchanged import Memos

_MIGRATION_LOCK = 0x726F74_6D6967


def migrate(database_url: str, audit: AuditStore) -> list[str]:
    """Create what is missing; returns one line per part, saying what was done."""
    lines = [f"audit trail: ready ({audit.location})"]
    DeliveryLog(audit.engine)
    lines.append("webhook deliveries: ready")
    Memos(audit.engine)
    lines.append("no-op memos: ready")
    if not Settings(database_url=database_url).distributed:
        lines.append("job queue: not used (SQLite: the embedded, one-process mode)")
        return lines
    engine = create_engine(database_url)
    try:
        create_tables(engine)
        lines.append("packument cache and GitHub request budgets: ready")
    finally:
        engine.dispose()
    from procrastinate.schema import SchemaManager  # noqa: PLC0415 - PostgreSQL only

    # psycopg sends a statement without parameters as it is (the schema has `%` in it)
    with psycopg.connect(conninfo(database_url)) as connection:  # one transaction
        connection.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
        row = connection.execute("SELECT to_regclass('procrastinate_jobs') IS NOT NULL").fetchone()
        if row is not None and row[0]:
            lines.append("job queue (procrastinate): already present")
        else:
            connection.execute(SchemaManager.get_schema())
            lines.append("job queue (procrastinate): schema applied")
    return lines


def copy_trail(source: AuditStore, target: AuditStore) -> int:
    """Copy `source`'s audit trail into `target` (which must hold no record); returns the
    number of records copied."""
    with target.engine.begin() as writing:
        if writing.execute(select(steps.c.seq).limit(1)).first() is not None:
            raise UsageError(
                f"audit database {target.location} already holds records; copy into a new "
                "database (its chain would fork otherwise)"
            )
        writing.execute(delete(chain_head))  # the new database's empty-chain head
        with source.engine.connect() as reading:
            for table in metadata.sorted_tables:
                if table is write_probe:
                    continue
                rows = [dict(row) for row in reading.execute(select(table)).mappings()]
                if rows:
                    writing.execute(insert(table), rows)
            copied = reading.execute(select(func.count()).select_from(steps)).scalar_one()
    return int(copied)
