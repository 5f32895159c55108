"""Scheduled rotations with APScheduler 3.11 (the only module that imports it).

One cron job per served repository and runbook, with a stable id (`rotate/<owner/name>/<runbook>`)
in a persistent SQLAlchemy job store on the audit database.  Jobs coalesce missed fire times,
run one instance at a time, and have no misfire limit, so a restart after downtime runs a missed
cycle exactly once.  Starting never resets a stored job's next run time: the scheduler starts
paused, reconciles the stored jobs with the wanted ones (add new, reschedule changed, remove
stale), and only then resumes.  A fired job does not run the rotation itself: a small executor
hands its `RunRequest` to the service's queue, which serializes work per repository.

Schedules are standard five-field crontab expressions in UTC.  APScheduler 3 numbers weekdays
from Monday (0) where crontab numbers them from Sunday (0 or 7), so day-of-week fields are
translated to names first: `0 6 * * 1-5` means Monday to Friday, as in crontab.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import EVENT_JOB_EXECUTED
from apscheduler.executors.base import BaseExecutor, run_job
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.base import JobLookupError
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import STATE_PAUSED, STATE_STOPPED
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import Engine, MetaData, Table, select
from sqlalchemy.exc import NoSuchTableError

from bot.config import RepoConfig
from bot.errors import BotError, ConfigError, redact
from bot.models import RunRequest, Trigger
from bot.service.locks import repository_key
from bot.service.workqueue import WorkQueue, WorkResult

log = logging.getLogger(__name__)

JOBS_TABLE = "rotation_bot_jobs"
_ROTATIONS = "rotations"
_INTERNAL = "internal"
_QUEUE = "queue"
_WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_APSCHEDULER_WEEK = (1, 2, 3, 4, 5, 6, 0)  # Monday first, as APScheduler 3 orders weekdays

RepositoryLister = Callable[[], Iterable[str]]
# Enqueue a fired job's request in the fleet's queue, once per (job id, cron slot) whoever asks;
# returns what happened (logged).
DeferSlot = Callable[[RunRequest, str, datetime], str]
RepoConfigReader = Callable[[str], RepoConfig]
# Told, at each refresh, what was wrong with a repository's config (None: nothing any more).
ProblemReporter = Callable[[str, BotError | None], None]


# --- crontab ---------------------------------------------------------------------------------


def _weekday(token: str) -> int:
    name = token.strip().lower()
    if name in _WEEKDAYS:
        return _WEEKDAYS.index(name)
    if name.isdigit() and 0 <= int(name) <= 7:
        return int(name)
    raise ValueError(f"{token!r} is not a weekday (0-7 or sun-sat)")


def _weekdays(field: str) -> str:
    """A crontab day-of-week field (0 and 7 are Sunday) as APScheduler weekday names."""
    days: set[int] = set()
    for part in field.split(","):
        span, slash, step_text = part.partition("/")
        step = int(step_text) if step_text.isdigit() else 0
        if slash and step < 1:
            raise ValueError(f"{part!r} has an invalid step")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            start, _, end = span.partition("-")
            first, last = _weekday(start), _weekday(end)
            last = 7 if last == 0 and first > 0 else last
            if last < first:
                raise ValueError(f"{part!r} runs backwards")
        else:
            first = _weekday(span)
            last = 6 if slash else first
        days.update(day % 7 for day in range(first, last + 1, step or 1))
    if len(days) == 7:
        return "*"
    return ",".join(_WEEKDAYS[day] for day in _APSCHEDULER_WEEK if day in days)


def crontab_trigger(expression: str, *, source: str) -> CronTrigger:
    """A UTC `CronTrigger` from a five-field crontab expression; `ConfigError` naming `source`."""
    fields = expression.split()
    try:
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, day, month, day_of_week = fields
        if not day.startswith("*") and not day_of_week.startswith("*"):
            raise ValueError("restrict the day of the month or the day of the week, not both")
        return CronTrigger(
            minute=minute,
            hour=hour,
            day=day,
            month=month,
            day_of_week=_weekdays(day_of_week),
            timezone=UTC,
        )
    except ValueError as error:
        raise ConfigError(
            f"{source}: schedule {expression!r} is not a crontab expression ({error}); "
            "use five fields in UTC, like '0 6 * * 1-5'"
        ) from error


# --- jobs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ScheduleEntry:
    """One wanted cron job: a runbook of a repository on a crontab schedule (UTC)."""

    repo: str
    runbook: str
    schedule: str

    @property
    def job_id(self) -> str:
        """The stable job id."""
        return job_id(self.repo, self.runbook)

    def trigger(self) -> CronTrigger:
        """The entry's cron trigger; `ConfigError` naming the repository and key when invalid."""
        source = f"{self.repo} .github/rotation-bot.yml runbooks.{self.runbook}.schedule"
        return crontab_trigger(self.schedule, source=source)


def stored_next_runs(engine: Engine, repo: str) -> dict[str, datetime | None]:
    """The next run time of each of `repo`'s stored jobs, by runbook, read from the job table
    (for a process that runs no scheduler: a web replica answering `/rotate status`)."""
    prefix = job_id(repo, "")
    try:
        table = Table(JOBS_TABLE, MetaData(), autoload_with=engine)
    except NoSuchTableError:  # no scheduler has started yet
        return {}
    with engine.connect() as connection:
        rows = connection.execute(
            select(table.c.id, table.c.next_run_time).where(table.c.id.startswith(prefix))
        ).all()
    return {
        str(row.id).removeprefix(prefix): None
        if row.next_run_time is None
        else datetime.fromtimestamp(float(row.next_run_time), UTC)
        for row in rows
    }


def job_id(repo: str, runbook: str) -> str:
    """The stable id of a repository's runbook job."""
    return f"rotate/{repository_key(repo)}/{runbook}"


def scheduled_request(repo: str, runbook: str) -> RunRequest:
    """The request a cron job makes (the stored job's callable; its arguments are persisted)."""
    return RunRequest(
        repo=repo, trigger=Trigger(kind="schedule", actor="schedule"), runbooks=(runbook,)
    )


def wanted_entries(
    repo: str, config: RepoConfig, runbooks: Iterable[str], default_schedule: str
) -> list[ScheduleEntry]:
    """The jobs one repository wants: each enabled runbook on its own or the default schedule."""
    return [
        ScheduleEntry(repo, name, config.runbook(name).schedule or default_schedule)
        for name in runbooks
        if config.runbook(name).enabled
    ]


class _QueueExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs a due job's callable (which only builds a `RunRequest`) and queues the request.

    The job counts as running until the queue reports the request done, so `max_instances=1`
    means one queued-or-running rotation per job.  A request that shutdown dropped or interrupted
    gets its fire time back, so the next start runs it.
    """

    def __init__(self, queue: WorkQueue, restore: Callable[[str, datetime], None]) -> None:
        super().__init__()
        self.queue = queue
        self.restore = restore

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
        executed = [event for event in events if event.code == EVENT_JOB_EXECUTED]
        if not executed or not isinstance(executed[-1].retval, RunRequest):
            self._run_job_success(job.id, events)
            return
        request: RunRequest = executed[-1].retval
        run_time: datetime = executed[-1].scheduled_run_time

        def done(result: WorkResult) -> None:
            if result.interrupted:
                self.restore(job.id, run_time)
            self._run_job_success(job.id, events)

        admission = self.queue.submit(request, if_busy="wait", on_done=done)
        if admission != "queued":
            log.info("scheduled rotation not queued", extra={"job": job.id, "answer": admission})
            # Still inside submit_job (re-entrant lock): the instance count it adds after this
            # call is balanced here, so the job is free to fire next time.
            self._run_job_success(job.id, events)


class _DeferExecutor(BaseExecutor):  # type: ignore[misc]
    """Runs a due job's callable (which only builds a `RunRequest`) and enqueues the request in
    the fleet's queue with the job's cron slot (coalesced: the latest missed fire time) as its
    de-duplication key.  APScheduler records the next fire time only after this returns, so a
    scheduler that dies in between leaves the slot due: its successor fires the same slot,
    which the queue enqueues at most once."""

    def __init__(self, defer: DeferSlot) -> None:
        super().__init__()
        self.defer = defer

    def _do_submit_job(self, job: Any, run_times: list[datetime]) -> None:
        events = run_job(job, job._jobstore_alias, run_times, self._logger.name)
        executed = [event for event in events if event.code == EVENT_JOB_EXECUTED]
        if executed and isinstance(executed[-1].retval, RunRequest):
            slot: datetime = executed[-1].scheduled_run_time
            try:
                answer = self.defer(executed[-1].retval, job.id, slot)
            except BotError as error:
                log.error(
                    "scheduled rotation not enqueued",
                    extra={"job": job.id, "slot": slot.isoformat(), "error": error.message},
                )
            else:
                log.info(
                    "scheduled rotation",
                    extra={"job": job.id, "slot": slot.isoformat(), "answer": answer},
                )
        self._run_job_success(job.id, events)


class Scheduler:
    """Cron jobs for every served repository and runbook, feeding the service's queue (one
    process) or the fleet's (`defer`, distributed)."""

    def __init__(
        self,
        *,
        engine: Engine,
        queue: WorkQueue | None = None,
        defer: DeferSlot | None = None,
        runbooks: Sequence[str],
        default_schedule: str,
        repositories: RepositoryLister,
        repo_config: RepoConfigReader,
        refresh_interval: timedelta = timedelta(minutes=15),
        report: ProblemReporter | None = None,
    ) -> None:
        crontab_trigger(default_schedule, source="ROTATION_BOT_SCHEDULE")
        executor: BaseExecutor
        if queue is not None and defer is None:
            executor = _QueueExecutor(queue, self._restore)
        elif defer is not None and queue is None:
            executor = _DeferExecutor(defer)
        else:
            raise ValueError("a scheduler feeds either the process's queue or the fleet's")
        self.runbooks = tuple(runbooks)
        self.default_schedule = default_schedule
        self.repositories = repositories
        self.repo_config = repo_config
        self.report = report
        self.refresh_interval = refresh_interval
        self._served: frozenset[str] = frozenset()
        self._scheduler = BackgroundScheduler(
            jobstores={
                _ROTATIONS: SQLAlchemyJobStore(engine=engine, tablename=JOBS_TABLE),
                _INTERNAL: MemoryJobStore(),
            },
            executors={
                _QUEUE: executor,
                "default": ThreadPoolExecutor(1),
            },
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": None},
            timezone=UTC,
        )

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Load stored jobs, reconcile them with the served repositories, then start firing
        (missed cycles fire once now); the repository list is refreshed periodically."""
        self._scheduler.start(paused=True)
        self.refresh()
        self.every(self.refresh_interval, self.refresh, "refresh-repositories")
        self._scheduler.resume()

    def pause(self) -> None:
        """Stop firing jobs (shutdown begins); stored jobs keep their next run times."""
        self._scheduler.pause()

    def shutdown(self) -> None:
        """Stop the scheduler without waiting for anything it started (again: no-op)."""
        if self._scheduler.state == STATE_STOPPED:
            return
        # APScheduler 3 processes due jobs once more after `shutdown()`; detach the persistent
        # store first so that pass cannot consume a fire time given back by `_restore`.
        self._scheduler.remove_jobstore(_ROTATIONS, shutdown=False)
        self._scheduler.shutdown(wait=False)

    def every(self, interval: timedelta, function: Callable[[], object], name: str) -> None:
        """Run `function` every `interval` (housekeeping; not persisted, not a rotation)."""
        self._scheduler.add_job(
            function,
            "interval",
            seconds=interval.total_seconds(),
            id=name,
            jobstore=_INTERNAL,
            replace_existing=True,
        )

    def refresh_soon(self) -> None:
        """Refresh the served repositories now, in the background (an installation changed)."""
        self._scheduler.modify_job(
            "refresh-repositories", jobstore=_INTERNAL, next_run_time=datetime.now(UTC)
        )

    # --- repositories and jobs ---------------------------------------------------------

    def serves(self, repo: str) -> bool:
        """Whether `repo` is one of the served repositories (as of the last refresh)."""
        return repository_key(repo) in self._served

    def refresh(self) -> None:
        """Re-read the served repositories and their configs; add, change and remove jobs.

        A repository whose config cannot be read, for whatever reason, keeps its current jobs
        and is reported (the service records it as that repository's failed run); the others
        are unaffected.  If the list of repositories cannot be read, nothing changes.
        """
        try:
            repositories = sorted({repo.strip(): None for repo in self.repositories() if repo})
        except BotError as error:
            log.warning("repository list unavailable, keeping jobs", extra={"error": error.message})
            return
        wanted: list[ScheduleEntry] = []
        keep: set[str] = set()
        for repo in repositories:
            entries = self._entries(repo)
            if entries is None:
                keep.update(job_id(repo, runbook) for runbook in self.runbooks)
            else:
                wanted.extend(entries)
        self.reconcile(wanted, keep=keep)
        self._served = frozenset(repository_key(repo) for repo in repositories)

    def _entries(self, repo: str) -> list[ScheduleEntry] | None:
        """The jobs `repo` wants, or None when its config is unusable (reported, logged)."""
        problem: BotError | None = None
        entries: list[ScheduleEntry] = []
        try:
            config = self.repo_config(repo)
            entries = wanted_entries(repo, config, self.runbooks, self.default_schedule)
            for entry in entries:
                entry.trigger()
        except BotError as error:
            problem = error
        except Exception as error:  # one repository's data must never stop the others
            log.exception("reading a repository's config crashed", extra={"repo": repo})
            problem = BotError(
                redact(f"{repo}: reading its config failed ({type(error).__name__}: {error})")[:300]
            )
        if problem is not None:
            log.warning(
                "repository config unusable, keeping its jobs",
                extra={"repo": repo, "error": problem.message},
            )
        if self.report is not None:
            try:
                self.report(repo, problem)
            except Exception:
                log.exception(
                    "reporting a repository's config problem failed", extra={"repo": repo}
                )
        return None if problem is not None else entries

    def reconcile(self, wanted: Iterable[ScheduleEntry], *, keep: Iterable[str] = ()) -> None:
        """Make the stored jobs match `wanted`, leaving the ids in `keep` as they are."""
        stored = {job.id: job for job in self._scheduler.get_jobs(jobstore=_ROTATIONS)}
        for entry in wanted:
            trigger = entry.trigger()
            job = stored.pop(entry.job_id, None)
            if job is None:
                self._scheduler.add_job(
                    scheduled_request,
                    trigger,
                    args=(entry.repo, entry.runbook),
                    id=entry.job_id,
                    name=f"{entry.runbook} rotation of {entry.repo}",
                    jobstore=_ROTATIONS,
                    executor=_QUEUE,
                )
                log.info("job added", extra={"job": entry.job_id, "schedule": entry.schedule})
            elif repr(job.trigger) != repr(trigger):
                self._scheduler.reschedule_job(entry.job_id, jobstore=_ROTATIONS, trigger=trigger)
                log.info("job rescheduled", extra={"job": entry.job_id, "schedule": entry.schedule})
        for stale in set(stored) - set(keep):
            self._scheduler.remove_job(stale, jobstore=_ROTATIONS)
            log.info("job removed", extra={"job": stale})

    def next_runs(self, repo: str) -> Mapping[str, datetime | None]:
        """The next run time of each of `repo`'s jobs, by runbook."""
        prefix = job_id(repo, "")
        return {
            job.id.removeprefix(prefix): job.next_run_time
            for job in self._scheduler.get_jobs(jobstore=_ROTATIONS)
            if job.id.startswith(prefix)
        }

    def _restore(self, job: str, run_time: datetime) -> None:
        if self._scheduler.state != STATE_PAUSED:
            return
        try:
            self._scheduler.modify_job(job, jobstore=_ROTATIONS, next_run_time=run_time)
            log.info("unfinished scheduled rotation kept for the next start", extra={"job": job})
        except JobLookupError:
            log.warning("job vanished before its fire time could be kept", extra={"job": job})
