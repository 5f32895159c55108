"""`ROTATION_BOT_MAX_PRS_PER_HOUR` as one atomic claim per new pull request.

Counting the pull requests opened in the last hour and then opening one is a check-then-act
race between workers: two that both count four of five open two.  So a rotation that is about
to open a pull request (after its steps passed, right before publishing) claims a slot: one
transaction inserts its row into `rotation_bot_pr_slots` and counts the rows of the last hour,
and commits only if the count is within the limit.  On PostgreSQL the transaction first takes a
transaction-scoped advisory lock, so claims are made one at a time across the fleet; on SQLite
the insert takes the database's write lock, which does the same.  A claim whose publishing
failed, or that updated an existing pull request instead of opening one, is released.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, Integer, MetaData, String, Table, delete, func, select

from bot.audit import create_table, stamp

HOUR = timedelta(hours=1)
_CLAIM_LOCK = 0x726F74_736C6F74  # the advisory lock key of claims (PostgreSQL)

_metadata = MetaData()
pr_slots = Table(
    "rotation_bot_pr_slots",
    _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("claimed_at", String(40), nullable=False, index=True),  # `stamp` (UTC ISO)
    Column("repo", String(255), nullable=False),
    Column("branch", String(255), nullable=False),
)


class HourlySlots:
    """The claims of the last hour, in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_table(pr_slots, engine)

    def claim(self, repo: str, branch: str, limit: int, now: datetime) -> int | None:
        """Claim one of `limit` slots of the hour before `now` for a new pull request; the
        claim's id, or None when every slot is taken (nothing is kept then)."""
        with self.engine.connect() as connection, connection.begin() as transaction:
            if connection.dialect.name == "postgresql":
                connection.execute(select(func.pg_advisory_xact_lock(_CLAIM_LOCK)))
            inserted = connection.execute(
                pr_slots.insert().values(claimed_at=stamp(now), repo=repo, branch=branch)
            ).inserted_primary_key
            taken = connection.execute(
                select(func.count())
                .select_from(pr_slots)
                .where(pr_slots.c.claimed_at >= stamp(now - HOUR))
            ).scalar_one()
            if inserted is None or taken > limit:
                transaction.rollback()
                return None
        return int(inserted[0])

    def release(self, claim: int) -> None:
        """Give a claimed slot back (no pull request was opened with it)."""
        with self.engine.begin() as connection:
            connection.execute(delete(pr_slots).where(pr_slots.c.id == claim))
