"""The scheduler: crontab parsing, stable persistent jobs, restarts, missed cycles, reconciling."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler

from bot.audit import AuditStore
from bot.config import RepoConfig, RunbookSettings
from bot.errors import ConfigError, ServiceUnavailable
from bot.models import RunRequest, Trigger
from bot.service.locks import RepositoryLocks
from bot.service.metrics import Metrics
from bot.service.scheduler import JOBS_TABLE, Scheduler, crontab_trigger, job_id
from bot.service.workqueue import WorkQueue
from tests.support.service import RecordingRunner, wait_until

RUNBOOKS = ("base-image", "sharp")
SATURDAY = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)


def fire_times(expression: str, count: int, start: datetime = SATURDAY) -> list[datetime]:
    trigger = crontab_trigger(expression, source="test")
    times: list[datetime] = []
    moment = start
    while len(times) < count:
        moment = trigger.get_next_fire_time(None, moment)
        times.append(moment)
        moment += timedelta(seconds=1)
    return times


# --- crontab ---------------------------------------------------------------------------------


def test_default_schedule_is_weekday_mornings_utc_not_apschedulers_weekday_numbers() -> None:
    times = fire_times("0 6 * * 1-5", 10)
    assert {moment.strftime("%a") for moment in times} == {"Mon", "Tue", "Wed", "Thu", "Fri"}
    assert all(
        (moment.hour, moment.minute, moment.utcoffset()) == (6, 0, timedelta(0)) for moment in times
    )
    assert times[0] == datetime(2026, 1, 5, 6, 0, tzinfo=UTC)  # the Monday after


@pytest.mark.parametrize(
    ("expression", "days"),
    [
        ("0 6 * * 0", {"Sun"}),
        ("0 6 * * 7", {"Sun"}),
        ("0 6 * * sun", {"Sun"}),
        ("0 6 * * MON-FRI", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 6 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 6 * * fri-sun", {"Fri", "Sat", "Sun"}),
        ("0 6 * * */2", {"Sun", "Tue", "Thu", "Sat"}),
        ("0 6 * * 1/2", {"Mon", "Wed", "Fri"}),
        ("0 6 * * 1,3", {"Mon", "Wed"}),
        ("0 6 * * *", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_day_of_week_follows_crontab(expression: str, days: set[str]) -> None:
    assert {moment.strftime("%a") for moment in fire_times(expression, 14)} == days


def test_other_fields_pass_through() -> None:
    first = fire_times("30 2 1 jan *", 1)[0]
    assert (first.month, first.day, first.hour, first.minute) == (1, 1, 2, 30)
    quarter = fire_times("*/15 9 * * *", 4, start=datetime(2026, 1, 3, 0, 0, tzinfo=UTC))
    assert [moment.minute for moment in quarter] == [0, 15, 30, 45]


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("0 6 * *", "expected 5 fields"),
        ("@daily", "expected 5 fields"),
        ("61 6 * * *", "higher than the maximum"),
        ("0 6 1 * 1", "not both"),
        ("0 6 * * 3-1", "runs backwards"),
        ("0 6 * * 8", "not a weekday"),
        ("0 6 * * */0", "invalid step"),
    ],
)
def test_invalid_schedules_are_config_errors_naming_the_source(
    expression: str, problem: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        crontab_trigger(expression, source="octo/app runbooks.sharp.schedule")
    assert "octo/app runbooks.sharp.schedule" in caught.value.message
    assert problem in caught.value.message
    assert "0 6 * * 1-5" in caught.value.message


# --- the scheduler with a real job store -----------------------------------------------------


class Harness:
    """A queue with a recording runner, and schedulers made on one database file."""

    def __init__(self, tmp_path: Path) -> None:
        self.audit = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
        self.runner = RecordingRunner()
        self.queue = WorkQueue(
            self.runner, locks=RepositoryLocks(tmp_path / "locks"), metrics=Metrics(), workers=2
        )
        self.queue.start()
        self.repositories: list[str] = ["octo/app", "octo/api"]
        self.configs: dict[str, RepoConfig | Exception] = {}
        self.schedulers: list[Scheduler] = []

    def config(self, repo: str) -> RepoConfig:
        value = self.configs.get(repo, RepoConfig())
        if isinstance(value, Exception):
            raise value
        return value

    def listing(self) -> list[str]:
        if isinstance(self.repositories, Exception):
            raise self.repositories
        return list(self.repositories)

    def scheduler(self, *, start: bool = True) -> Scheduler:
        scheduler = Scheduler(
            engine=self.audit.engine,
            queue=self.queue,
            runbooks=RUNBOOKS,
            default_schedule="0 6 * * 1-5",
            repositories=self.listing,
            repo_config=self.config,
        )
        self.schedulers.append(scheduler)
        if start:
            scheduler.start()
        return scheduler

    @contextmanager
    def store(self) -> Iterator[BackgroundScheduler]:
        """The job store as another process sees it (a paused scheduler that runs nothing)."""
        scheduler = BackgroundScheduler(
            jobstores={
                "default": SQLAlchemyJobStore(engine=self.audit.engine, tablename=JOBS_TABLE)
            },
            timezone=UTC,
        )
        scheduler.start(paused=True)
        try:
            yield scheduler
        finally:
            scheduler.remove_jobstore("default", shutdown=False)
            scheduler.shutdown(wait=False)

    def stored(self) -> dict[str, datetime | None]:
        """Job id → next run time, as stored."""
        with self.store() as scheduler:
            return {job.id: job.next_run_time for job in scheduler.get_jobs()}

    def make_due(self, job: str, moment: datetime) -> None:
        """What a previous process that stopped before `moment` leaves behind: the job due then."""
        with self.store() as scheduler:
            scheduler.modify_job(job, next_run_time=moment)

    def close(self) -> None:
        for scheduler in self.schedulers:
            scheduler.shutdown()
        self.queue.stop(5)


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    value = Harness(tmp_path)
    try:
        yield value
    finally:
        value.close()


def test_jobs_have_stable_ids_and_survive_a_restart(harness: Harness) -> None:
    first = harness.scheduler()
    before = harness.stored()
    first.shutdown()

    assert sorted(before) == sorted(
        job_id(repo, runbook) for repo in ("octo/app", "octo/api") for runbook in RUNBOOKS
    )
    assert job_id("Octo/App", "sharp") == "rotate/octo/app/sharp"
    next_monday = before["rotate/octo/app/sharp"]
    assert next_monday is not None and next_monday > datetime.now(UTC)
    assert (next_monday.hour, next_monday.minute, next_monday.weekday() < 5) == (6, 0, True)

    harness.scheduler()
    assert harness.stored() == before  # same ids, same next run times: nothing was reset
    assert harness.runner.calls == []


def test_restart_after_downtime_runs_a_missed_cycle_exactly_once(harness: Harness) -> None:
    harness.scheduler().shutdown()
    # The process was down for three days: three weekday fire times were missed.
    harness.make_due("rotate/octo/app/sharp", datetime.now(UTC) - timedelta(days=3))

    harness.scheduler()
    calls = harness.runner.wait_for_calls(1)
    harness.queue.stop(5)

    assert len(harness.runner.calls) == 1, "coalesced: one run, not one per missed cycle"
    (call,) = calls
    assert call.request.repo == "octo/app"
    assert call.request.runbooks == ("sharp",)
    assert call.request.trigger.kind == "schedule"
    # Back on the weekday schedule (APScheduler stores the next time after it hands the job to
    # the queue, so wait for that write), and no other job fired.
    wait_until(
        lambda: all(
            when is not None and when > datetime.now(UTC) for when in harness.stored().values()
        ),
        message="the next run times stored",
    )
    assert len(harness.stored()) == 4
    assert len(harness.runner.calls) == 1


def test_a_second_restart_does_not_replay_the_cycle(harness: Harness) -> None:
    harness.scheduler().shutdown()
    harness.make_due("rotate/octo/api/base-image", datetime.now(UTC) - timedelta(hours=20))
    second = harness.scheduler()
    harness.runner.wait_for_calls(1)
    second.shutdown()

    harness.scheduler()
    harness.queue.stop(5)
    assert [call.request.repo for call in harness.runner.calls] == ["octo/api"]


def test_reconcile_follows_config_changes_and_keeps_jobs_it_cannot_check(
    harness: Harness,
) -> None:
    scheduler = harness.scheduler()
    original = harness.stored()

    harness.configs["octo/app"] = RepoConfig(
        runbooks={
            "sharp": RunbookSettings(schedule="30 7 * * 1"),
            "base-image": RunbookSettings(enabled=False),
        }
    )
    harness.configs["octo/api"] = ConfigError(".github/rotation-bot.yml: unknown key x")
    scheduler.refresh()
    changed = harness.stored()

    moved = changed["rotate/octo/app/sharp"]
    assert moved is not None and (moved.weekday(), moved.hour, moved.minute) == (0, 7, 30)
    assert "rotate/octo/app/base-image" not in changed
    # octo/api's config cannot be read: its jobs stay exactly as they were.
    assert changed["rotate/octo/api/sharp"] == original["rotate/octo/api/sharp"]
    assert changed["rotate/octo/api/base-image"] == original["rotate/octo/api/base-image"]
    assert scheduler.serves("OCTO/API") and scheduler.serves("octo/app")

    harness.repositories = ServiceUnavailable("GitHub: installations unavailable")  # type: ignore[assignment]
    scheduler.refresh()
    assert harness.stored() == changed

    harness.repositories = ["octo/api"]
    harness.configs.pop("octo/api")
    scheduler.refresh()
    assert sorted(harness.stored()) == ["rotate/octo/api/base-image", "rotate/octo/api/sharp"]
    assert not scheduler.serves("octo/app")


def test_invalid_repo_schedule_keeps_the_repositorys_jobs(harness: Harness) -> None:
    scheduler = harness.scheduler()
    before = harness.stored()
    harness.configs["octo/app"] = RepoConfig(runbooks={"sharp": RunbookSettings(schedule="0 6")})
    scheduler.refresh()
    assert harness.stored() == before


def test_a_crashing_config_reader_is_reported_and_spares_the_other_repositories(
    harness: Harness,
) -> None:
    harness.configs["octo/app"] = RecursionError("maximum recursion depth exceeded")
    reports: list[tuple[str, str | None]] = []
    scheduler = Scheduler(
        engine=harness.audit.engine,
        queue=harness.queue,
        runbooks=RUNBOOKS,
        default_schedule="0 6 * * 1-5",
        repositories=harness.listing,
        repo_config=harness.config,
        report=lambda repo, problem: reports.append(
            (repo, None if problem is None else problem.message)
        ),
    )
    harness.schedulers.append(scheduler)

    scheduler.start()  # the crash stays inside the repository that caused it

    assert sorted(harness.stored()) == ["rotate/octo/api/base-image", "rotate/octo/api/sharp"]
    assert sorted(reports) == [
        ("octo/api", None),
        ("octo/app", "octo/app: reading its config failed (RecursionError: maximum recursion "
         "depth exceeded)"),
    ]  # fmt: skip


def test_invalid_default_schedule_is_a_config_error(harness: Harness) -> None:
    with pytest.raises(ConfigError, match="ROTATION_BOT_SCHEDULE"):
        Scheduler(
            engine=harness.audit.engine,
            queue=harness.queue,
            runbooks=RUNBOOKS,
            default_schedule="every morning",
            repositories=list,
            repo_config=harness.config,
        )


def test_scheduled_request_dropped_at_shutdown_runs_at_the_next_start(
    harness: Harness, tmp_path: Path
) -> None:
    gate = harness.runner.hold("octo/app")
    chat = RunRequest(repo="octo/app", trigger=Trigger(kind="chat", actor="alice"))
    assert harness.queue.submit(chat, if_busy="reject") == "queued"  # a chat rotation runs…
    assert harness.runner.entered.wait(5)
    harness.scheduler().shutdown()
    harness.make_due("rotate/octo/app/sharp", datetime.now(UTC) - timedelta(minutes=5))
    scheduler = harness.scheduler()  # …so the missed cycle waits in the queue behind it
    wait_until(lambda: harness.queue.depth() == 1, message="the cycle to be queued")

    scheduler.pause()  # shutdown: the queued cycle never starts
    still_running = harness.queue.stop(0.2)
    gate.set()
    scheduler.shutdown()
    assert still_running == [chat]
    stored = harness.stored()["rotate/octo/app/sharp"]
    assert stored is not None and stored < datetime.now(UTC), "its fire time was given back"

    harness.runner = RecordingRunner()
    harness.queue = WorkQueue(
        harness.runner, locks=RepositoryLocks(tmp_path / "locks"), metrics=Metrics()
    )
    harness.queue.start()
    harness.scheduler()
    (call,) = harness.runner.wait_for_calls(1)
    assert (call.request.repo, call.request.runbooks) == ("octo/app", ("sharp",))
    assert call.request.trigger.kind == "schedule"
