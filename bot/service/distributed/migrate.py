"""`rotation-bot migrate`: every table the service uses, created where missing.

The audit trail creates its own tables (opening the store does); this adds the webhook delivery
log, and on PostgreSQL the fleet's packument cache and request budgets and procrastinate's
schema (applied when its job table is absent; a later procrastinate version's migrations are
applied with its own tooling, see deploy/README.md).  Safe to run again, and from several
processes at once (the schema is applied under a transaction-scoped advisory lock).
"""

from __future__ import annotations

from sqlalchemy import create_engine, func, select, text

from bot.audit import AuditStore
from bot.config import Settings
from bot.service.distributed.shared import create_tables
from bot.service.webhook import DeliveryLog

_MIGRATION_LOCK = 0x726F74_6D6967


def migrate(database_url: str, audit: AuditStore) -> list[str]:
    """Create what is missing; returns one line per part, saying what was done."""
    lines = [f"audit trail: ready ({audit.location})"]
    DeliveryLog(audit.engine)
    lines.append("webhook deliveries: ready")
    if not Settings(database_url=database_url).distributed:
        lines.append("job queue: not used (SQLite: the embedded, one-process mode)")
        return lines
    engine = create_engine(database_url)
    try:
        create_tables(engine)
        lines.append("packument cache and GitHub request budgets: ready")
        from procrastinate import schema  # noqa: PLC0415 - PostgreSQL only

        with engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(_MIGRATION_LOCK)))
            present = connection.execute(
                text("SELECT to_regclass('procrastinate_jobs') IS NOT NULL")
            ).scalar_one()
            if present:
                lines.append("job queue (procrastinate): already present")
            else:
                connection.exec_driver_sql(schema.SchemaManager.get_schema())
                lines.append("job queue (procrastinate): schema applied")
    finally:
        engine.dispose()
    return lines
