"""`ROTATION_BOT_MAX_PRS_PER_HOUR` claimed atomically: workers claiming at the same instant (each
on its own connection, as separate processes are) never get more slots than the limit, on
PostgreSQL (the fleet) and on SQLite (the one-process mode's threads)."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from bot.lifecycle.slots import HourlySlots
from tests.support.postgres import Postgres

WORKERS = 4
START = datetime(2026, 1, 1, tzinfo=UTC)


def database(kind: str, tmp_path: Path, postgres: Postgres | None) -> str:
    if kind == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    assert postgres is not None
    return postgres.create_database(f"slots_{uuid.uuid4().hex[:12]}")


@pytest.fixture(params=["postgresql", "sqlite"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    postgres = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    return database(request.param, tmp_path, postgres)


def claim_at_once(workers: list[HourlySlots], limit: int, now: datetime) -> list[int | None]:
    """Every worker claims a slot at the same instant; what each got."""
    together = threading.Barrier(len(workers))
    claims: list[int | None] = []
    lock = threading.Lock()

    def claim(slots: HourlySlots, index: int) -> None:
        together.wait(30)
        got = slots.claim(f"octo/app{index}", "rotation-bot/sharp-1", limit, now)
        with lock:
            claims.append(got)

    threads = [
        threading.Thread(target=claim, args=(slots, index)) for index, slots in enumerate(workers)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return claims


def test_workers_claiming_at_once_never_exceed_the_hourly_limit(url: str) -> None:
    workers = [HourlySlots(create_engine(url)) for _ in range(WORKERS)]
    for limit in (1, 2):
        for hour in range(5):  # each round in an hour of its own: the earlier rounds' claims age
            now = START + timedelta(hours=3 * hour + 30 * limit)
            claims = claim_at_once(workers, limit, now)
            assert len(claims) == WORKERS
            assert sum(1 for got in claims if got is not None) == limit, (limit, hour, claims)


def test_a_released_slot_can_be_claimed_again(url: str) -> None:
    slots = HourlySlots(create_engine(url))
    first = slots.claim("octo/app", "rotation-bot/sharp-1", 1, START)
    assert first is not None
    assert slots.claim("octo/other", "rotation-bot/sharp-1", 1, START) is None
    slots.release(first)
    assert slots.claim("octo/other", "rotation-bot/sharp-1", 1, START) is not None
    # an hour on, the claim has aged out
    assert (
        slots.claim("octo/third", "rotation-bot/sharp-1", 1, START + timedelta(hours=1, seconds=1))
        is not None
    )
