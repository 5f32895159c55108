"""What the fleet's workers share in PostgreSQL: the packument cache (one request per package
for the whole fleet) and the GitHub request budget (one bucket per installation), each used
from several engines at once, as separate worker processes would."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, select

from bot.cancellation import ShutdownRequested
from bot.forges.github import GitHubForge, GitHubOptions
from bot.service.distributed.shared import (
    FleetPackumentCache,
    RequestBudget,
    budgets,
    create_tables,
)
from bot.sources.http import HttpSource
from bot.sources.npm.registry import CachedPackument, NpmRegistry
from bot.sources.npm.settings import NpmSettings
from tests.support.github_api import make_git_repository, start_github_api
from tests.support.postgres import Postgres
from tests.support.verdaccio import Verdaccio


@pytest.fixture
def engines(postgres: Postgres) -> Iterator[list[Engine]]:
    url = postgres.create_database(f"shared_{uuid.uuid4().hex[:12]}")
    engines = [create_engine(url) for _ in range(4)]
    create_tables(engines[0])
    try:
        yield engines
    finally:
        for engine in engines:
            engine.dispose()


def test_workers_asking_for_one_packument_at_once_make_one_request(engines: list[Engine]) -> None:
    fetches: list[CachedPackument | None] = []
    lock = threading.Lock()
    entered = threading.Barrier(len(engines))

    def fetch(held: CachedPackument | None) -> CachedPackument:
        with lock:
            fetches.append(held)
        return CachedPackument({"name": "sharp", "versions": {}}, etag=None)

    answers: list[CachedPackument] = []

    def worker(engine: Engine) -> None:
        cache = FleetPackumentCache(engine, ttl=300)
        entered.wait(10)
        answers.append(cache.get("http://registry.test/sharp", fetch))

    threads = [threading.Thread(target=worker, args=(engine,)) for engine in engines]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert fetches == [None]
    assert [answer.body["name"] for answer in answers] == ["sharp"] * len(engines)


def test_a_stale_packument_is_asked_again_with_its_validators(engines: list[Engine]) -> None:
    first, second = (FleetPackumentCache(engine, ttl=0.000001) for engine in engines[:2])
    seen: list[CachedPackument | None] = []

    def fetch(held: CachedPackument | None) -> CachedPackument:
        seen.append(held)
        return held or CachedPackument({"name": "sharp"}, etag='W/"1"', last_modified=None)

    first.get("http://registry.test/sharp", fetch)
    second.get("http://registry.test/sharp", fetch)  # another worker, after the TTL
    assert seen[0] is None
    assert seen[1] == CachedPackument({"name": "sharp"}, etag='W/"1"', last_modified=None)


def test_the_npm_client_fetches_through_the_fleet_cache(
    engines: list[Engine], registry: Verdaccio
) -> None:
    settings = NpmSettings(registry=registry.url)
    clients = [
        NpmRegistry(settings, HttpSource(), cache=FleetPackumentCache(engine, ttl=300))
        for engine in engines[:2]
    ]
    first = clients[0].packument("sharp")
    shared = FleetPackumentCache(engines[2], ttl=300)

    def must_not_fetch(_held: CachedPackument | None) -> CachedPackument:
        raise AssertionError("the packument should come from the table")

    key = clients[1]._key(clients[1].packument_url("sharp"))
    assert shared.get(key, must_not_fetch).body["name"] == "sharp"
    assert clients[1].packument("sharp").versions == first.versions


def test_the_request_budget_is_one_bucket_for_every_worker(engines: list[Engine]) -> None:
    stop = threading.Event()
    # 12 requests an hour: a bucket of one request, refilled every five minutes.
    budgets = [RequestBudget(engine, per_hour=12, stop=stop) for engine in engines[:2]]
    budgets[0]("installation/7")  # the one request the bucket holds
    budgets[1]("installation/8")  # another installation has its own bucket
    stop.set()
    with pytest.raises(ShutdownRequested):
        budgets[1]("installation/7")  # empty for every worker: it would wait, and is stopped


def test_a_full_bucket_never_exceeds_github_s_secondary_limit_of_900_a_minute(
    engines: list[Engine],
) -> None:
    """Five minutes' worth, unless that plus a minute's refill would pass 900 requests."""

    def tokens_left(per_hour: float, name: str) -> float:
        RequestBudget(engines[0], per_hour=per_hour)(name)  # the first request: a full bucket
        with engines[0].connect() as connection:
            return float(
                connection.execute(
                    select(budgets.c.tokens).where(budgets.c.name == name)
                ).scalar_one()
            )

    assert tokens_left(4000, "token") == pytest.approx(4000 / 12 - 1)
    # 36,000 an hour is 600 a minute: a bucket of 3,000 would allow 3,600 in its first minute
    assert tokens_left(36_000, "installation/1") == pytest.approx(900 - 600 - 1)
    # more than 900 a minute on average: the bucket holds one request at a time
    assert tokens_left(60_000, "installation/2") == pytest.approx(0)


def test_the_github_forge_spends_each_request_from_the_fleet_budget(
    engines: list[Engine], tmp_path: Path
) -> None:
    running = start_github_api(tmp_path / "api")
    try:
        api = running.api
        remote = make_git_repository(tmp_path / "git", {"package.json": "{}\n"})
        api.add_repository("octo/app", remote.bare)
        api.add_token("ghp_budget", login="rotation-bot")
        stop = threading.Event()
        options = GitHubOptions(seconds_between_requests=0, seconds_between_writes=0)
        # Two workers' forges, one bucket of one request (12 an hour) for the token.
        forges = [
            GitHubForge(
                api.api_url,
                token="ghp_budget",
                options=options,
                budget=RequestBudget(engine, per_hour=12, stop=stop),
            )
            for engine in engines[:2]
        ]
        assert forges[0].find_proposal("octo/app", "rotation-bot/sharp-0.33.5") is None
        spent = len(api.requests)
        stop.set()
        with pytest.raises(ShutdownRequested):  # the other worker finds the bucket empty
            forges[1].find_proposal("octo/app", "rotation-bot/sharp-0.33.5")
        assert len(api.requests) == spent  # it waited instead of asking GitHub
    finally:
        running.stop()
