"""What the workers share in PostgreSQL besides the queue: the packument cache and the GitHub
request budget, and `migrate`, which creates every table the fleet uses.

- `FleetPackumentCache`: one row per packument URL (and credential fingerprint) with its body,
  `ETag`, `Last-Modified` and when it was fetched.  A worker that needs a packument takes a
  transaction-scoped advisory lock on the key, so concurrent workers wait for the one fetching
  it; a row younger than the TTL is used as is, an older one is asked again conditionally.
  So the fleet makes one request per package per TTL (the registry mirror here sends no
  validators: then the TTL alone keeps it to one per cycle).
- `RequestBudget`: a token bucket per GitHub installation (or token) in one row, refilled at
  `ROTATION_BOT_GITHUB_RATE_BUDGET` requests per hour, taken under `SELECT … FOR UPDATE`; a
  worker that finds it empty waits.  A row rather than procrastinate's job throttling: the cost
  is API requests, not jobs (a no-op rotation spends one, a proposal a dozen), and procrastinate
  has no rate limiting of its own — its locks bound concurrency, not rate.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Column, Engine, Float, MetaData, String, Table, Text, func, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.sql.elements import ColumnElement

from bot.cancellation import check
from bot.sources.npm.registry import CachedPackument, PackumentFetch
from bot.unchanged import body_digest

log = logging.getLogger(__name__)

_metadata = MetaData()
packuments = Table(
    "rotation_bot_packuments",
    _metadata,
    Column("key", Text, primary_key=True),
    Column("etag", Text),
    Column("last_modified", Text),
    Column("fetched_at", Float, nullable=False),  # epoch seconds, the database's clock
    Column("body", Text, nullable=False),
)
budgets = Table(
    "rotation_bot_request_budgets",
    _metadata,
    Column("name", String(200), primary_key=True),
    Column("tokens", Float, nullable=False),
    Column("updated_at", Float, nullable=False),  # epoch seconds, the database's clock
)


def create_tables(engine: Engine) -> None:
    """Create the packument cache and budget tables if missing."""
    _metadata.create_all(engine)


def _database_now() -> ColumnElement[Any]:
    """The database's clock as epoch seconds (one clock for every machine)."""
    return func.extract("epoch", func.clock_timestamp())


class FleetPackumentCache:
    """Packuments shared by every worker, fresh for `ttl` seconds (see the module docstring)."""

    def __init__(self, engine: Engine, ttl: float) -> None:
        self.engine = engine
        self.ttl = ttl
        # key -> (monotonic time it was fetched, the packument, its body_digest)
        self._memory: dict[str, tuple[float, CachedPackument, str]] = {}
        self._lock = threading.Lock()

    def _remembered(self, key: str) -> tuple[CachedPackument, str] | None:
        with self._lock:
            remembered = self._memory.get(key)
        if remembered is not None and time.monotonic() - remembered[0] < self.ttl:
            return remembered[1], remembered[2]
        return None

    def _remember(self, key: str, packument: CachedPackument, age: float) -> str:
        validator = body_digest(packument.body)
        with self._lock:
            self._memory[key] = (time.monotonic() - age, packument, validator)
        return validator

    def current(self, key: str) -> str | None:
        """The `body_digest` of the packument under `key` while younger than the TTL (from
        memory, else the table), without a request; None when it would need one."""
        remembered = self._remembered(key)
        if remembered is not None:
            return remembered[1]
        with self.engine.connect() as connection:
            now = float(connection.execute(select(_database_now())).scalar_one())
            row = connection.execute(select(packuments).where(packuments.c.key == key)).first()
        if row is None or now - row.fetched_at >= self.ttl:
            return None
        held = CachedPackument(json.loads(row.body), row.etag, row.last_modified)
        return self._remember(key, held, now - row.fetched_at)

    def get(self, key: str, fetch: PackumentFetch) -> CachedPackument:
        """The packument under `key`: from this process's memory or the table while younger
        than the TTL, else fetched (conditionally) by exactly one worker and stored."""
        remembered = self._remembered(key)
        if remembered is not None:
            return remembered[0]
        with self.engine.begin() as connection:
            connection.execute(select(func.pg_advisory_xact_lock(func.hashtextextended(key, 0))))
            now = float(connection.execute(select(_database_now())).scalar_one())
            row = connection.execute(select(packuments).where(packuments.c.key == key)).first()
            held = (
                CachedPackument(json.loads(row.body), row.etag, row.last_modified)
                if row is not None
                else None
            )
            if row is not None and held is not None and now - row.fetched_at < self.ttl:
                fresh, age = held, now - row.fetched_at
            else:
                fresh, age = fetch(held), 0.0
                values = {
                    "etag": fresh.etag,
                    "last_modified": fresh.last_modified,
                    "fetched_at": now,
                    "body": json.dumps(fresh.body),
                }
                connection.execute(
                    pg_insert(packuments)
                    .values(key=key, **values)
                    .on_conflict_do_update(index_elements=[packuments.c.key], set_=values)
                )
        self._remember(key, fresh, age)
        return fresh


# GitHub's secondary rate limit: at most 900 points a minute on REST endpoints (a GET costs one)
SECONDARY_LIMIT_PER_MINUTE = 900.0


@dataclass(frozen=True)
class RequestBudget:
    """A token bucket per name (`installation/ID`, `token`, `app`) shared by the fleet.

    `per_hour` requests are added back per hour; at most `burst` are kept (five minutes'
    worth), so an idle hour does not let the fleet spend a whole hour's budget at once, and
    never so many that a full bucket plus a minute's refill exceeds GitHub's secondary limit
    of 900 REST requests a minute.  This bucket is the fleet's only pacing of reads (no
    per-process delay between GETs: bot/cli.py).  Waiting stops at shutdown or the run's
    deadline (`stop`)."""

    engine: Engine
    per_hour: float
    stop: threading.Event | None = None

    @property
    def burst(self) -> float:
        """The most requests the bucket holds."""
        return max(min(self.per_hour / 12, SECONDARY_LIMIT_PER_MINUTE - self.per_hour / 60), 1.0)

    def __call__(self, name: str) -> None:
        """Take one request from `name`'s bucket, waiting until there is one."""
        rate = self.per_hour / 3600
        while True:
            wait = self._take(name, rate)
            if wait <= 0:
                return
            log.info(
                "GitHub request budget spent; waiting",
                extra={"budget": name, "seconds": round(wait, 1)},
            )
            deadline = time.monotonic() + wait
            while (left := deadline - time.monotonic()) > 0:
                check(self.stop)
                time.sleep(min(left, 0.5))

    def _take(self, name: str, rate: float) -> float:
        """Take a token if there is one (0.0), else the seconds until there will be."""
        with self.engine.begin() as connection:
            now = float(connection.execute(select(_database_now())).scalar_one())
            connection.execute(
                pg_insert(budgets)
                .values(name=name, tokens=self.burst, updated_at=now)
                .on_conflict_do_nothing(index_elements=[budgets.c.name])
            )
            row = connection.execute(
                select(budgets.c.tokens, budgets.c.updated_at)
                .where(budgets.c.name == name)
                .with_for_update()
            ).one()
            tokens = min(self.burst, row.tokens + max(now - row.updated_at, 0.0) * rate)
            taken = tokens >= 1.0
            connection.execute(
                update(budgets)
                .where(budgets.c.name == name)
                .values(tokens=tokens - 1.0 if taken else tokens, updated_at=now)
            )
        return 0.0 if taken else (1.0 - tokens) / rate
