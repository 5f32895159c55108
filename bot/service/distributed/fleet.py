"""The fleet's queue: rotation requests as procrastinate jobs in PostgreSQL.

A request becomes one job of the `rotation_bot.rotate` task on the `rotations` queue, with

- `lock` = the repository's key: procrastinate starts no job while another job with the same
  lock is running, so one rotation per repository runs at a time across every worker;
- `queueing_lock` = the repository, runbooks, target and action: a second identical request
  while one waits is refused (`AlreadyEnqueued`, answered "already queued"); a `/rotate rebase`,
  `recreate` or `explain` is other work than a plain rotation of the same runbooks, so it is
  queued beside one (a plain rotation's lock has no action part, as before the actions existed);
- `priority`: chat commands (10) before scheduled work (0);
- for a scheduled request, the cron slot: `defer_periodic_job` records (job id, slot) and
  enqueues in one statement, so a slot is enqueued at most once, whichever scheduler fires it.

Web replicas and schedulers enqueue through `FleetQueue` (synchronous; procrastinate's async API
runs on a private event loop); workers run the jobs (`bot/service/distributed/worker.py`).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Mapping
from datetime import datetime
from typing import Any, Literal, TypeVar, get_args

import procrastinate
from procrastinate import exceptions as procrastinate_errors
from psycopg.conninfo import make_conninfo
from sqlalchemy.engine import make_url

from bot.errors import ServiceUnavailable
from bot.models import Action, RunRequest, Trigger
from bot.service.chat import AnswerComment, CommentEvent
from bot.service.locks import repository_key
from bot.service.workqueue import Activity, Admission, Callback, IfBusy

ROTATE_TASK = "rotation_bot.rotate"
ROTATIONS_QUEUE = "rotations"
PRIORITIES = {"chat": 10, "schedule": 0, "cli": 0}
_TIMEOUT = 30.0
T = TypeVar("T")
SlotAnswer = Literal["queued", "already-queued", "slot-already-enqueued"]


def conninfo(database_url: str) -> str:
    """libpq connection parameters for a SQLAlchemy PostgreSQL URL (`postgresql+psycopg://…`)."""
    url = make_url(database_url)
    parameters: dict[str, Any] = {
        "host": url.host,
        "port": url.port,
        "user": url.username,
        "password": url.password,
        "dbname": url.database,
    }
    parameters.update({key: str(value) for key, value in url.query.items()})
    return make_conninfo(**{key: value for key, value in parameters.items() if value is not None})


def make_app(database_url: str, *, pool_size: int = 4) -> procrastinate.App:
    """A procrastinate app on the database (not yet open)."""
    return procrastinate.App(
        connector=procrastinate.PsycopgConnector(
            conninfo=conninfo(database_url),
            min_size=1,
            max_size=pool_size,
            kwargs={"application_name": "rotation-bot"},
        )
    )


# --- a request as job arguments ---------------------------------------------------------------


def request_arguments(request: RunRequest) -> dict[str, Any]:
    """A request as JSON job arguments."""
    return {
        "repo": request.repo,
        "trigger": {
            "kind": request.trigger.kind,
            "actor": request.trigger.actor,
            "url": request.trigger.url,
        },
        "runbooks": list(request.runbooks) if request.runbooks is not None else None,
        "target": request.target,
        "forge": request.forge,
        "action": request.action,
    }


def request_from(arguments: Mapping[str, Any]) -> RunRequest:
    """The request in a job's arguments (written by `request_arguments`; a job enqueued before
    requests had an action is a plain rotation)."""
    trigger = arguments["trigger"]
    if trigger["kind"] not in PRIORITIES:
        raise ValueError(f"unknown trigger {trigger['kind']!r}")
    action = arguments.get("action", "rotate")
    if action not in get_args(Action):
        raise ValueError(f"unknown action {action!r}")
    runbooks = arguments.get("runbooks")
    return RunRequest(
        repo=str(arguments["repo"]),
        trigger=Trigger(kind=trigger["kind"], actor=str(trigger["actor"]), url=trigger.get("url")),
        runbooks=tuple(str(name) for name in runbooks) if runbooks is not None else None,
        target=arguments.get("target"),
        forge=arguments.get("forge"),
        action=action,
    )


def comment_arguments(event: CommentEvent) -> dict[str, Any]:
    """The comment a worker answers when the job is done, as JSON job arguments."""
    return {
        "repo": event.repo,
        "issue_number": event.issue_number,
        "comment_id": event.comment_id,
        "comment_url": event.comment_url,
        "author": event.author,
        "body": "",  # the command was parsed on the web side; the answer needs no body
    }


def comment_from(arguments: Mapping[str, Any]) -> CommentEvent:
    """The comment in a job's arguments (written by `comment_arguments`)."""
    return CommentEvent(
        repo=str(arguments["repo"]),
        issue_number=int(arguments["issue_number"]),
        comment_id=int(arguments["comment_id"]),
        comment_url=str(arguments["comment_url"]),
        author=str(arguments["author"]),
        body=str(arguments.get("body", "")),
    )


def repository_lock(request: RunRequest) -> str:
    """The job lock: one running rotation per repository across the fleet."""
    return repository_key(request.repo)


def queueing_lock(request: RunRequest) -> str:
    """The queueing lock: one waiting job per repository, runbooks, target and action."""
    runbooks = ",".join(request.runbooks) if request.runbooks is not None else "*"
    lock = f"{repository_key(request.repo)}|{runbooks}|{request.target or ''}"
    return lock if request.action == "rotate" else f"{lock}|{request.action}"


# --- enqueueing -------------------------------------------------------------------------------


class _Loop:
    """An event loop in a daemon thread, so synchronous code can call procrastinate's async API."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(
            target=self.loop.run_forever, name="fleet-queue", daemon=True
        )
        self.thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(_TIMEOUT)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


class FleetQueue:
    """Enqueues requests in the fleet's queue and reads what it holds (web, scheduler)."""

    def __init__(self, database_url: str) -> None:
        self.app = make_app(database_url)
        self._loop = _Loop()
        try:
            self._loop.run(self._open())
        except Exception as error:
            self._loop.close()
            raise _unavailable("open the job queue", error) from error

    async def _open(self) -> None:
        await self.app.open_async()

    def close(self) -> None:
        """Close the connection pool and the loop."""
        try:
            self._loop.run(self.app.close_async())
        finally:
            self._loop.close()

    def _call(self, action: str, coroutine: Coroutine[Any, Any, T]) -> T:
        try:
            return self._loop.run(coroutine)
        except procrastinate_errors.AlreadyEnqueued:
            raise
        except (procrastinate_errors.ProcrastinateException, OSError, TimeoutError) as error:
            raise _unavailable(action, error) from error

    def submit(
        self, request: RunRequest, *, if_busy: IfBusy, on_done: Callback | None = None
    ) -> Admission:
        """Enqueue `request` ("already-running" for a chat request while its repository rotates,
        "already-queued" while the same request waits).  `on_done` may only be a chat command's
        `AnswerComment`: its comment travels with the job and the worker answers it."""
        if on_done is not None and not isinstance(on_done, AnswerComment):
            raise TypeError("only a chat answer can travel with a job to another machine")
        if if_busy == "reject" and self.activity(request.repo).running is not None:
            return "already-running"
        arguments: dict[str, Any] = {"request": request_arguments(request)}
        if on_done is not None:
            arguments["answer"] = comment_arguments(on_done.event)
        deferrer = self.app.configure_task(
            ROTATE_TASK,
            queue=ROTATIONS_QUEUE,
            lock=repository_lock(request),
            queueing_lock=queueing_lock(request),
            priority=PRIORITIES[request.trigger.kind],
        )
        try:
            self._call("enqueue a rotation", deferrer.defer_async(**arguments))
        except procrastinate_errors.AlreadyEnqueued:
            return "already-queued"
        return "queued"

    def defer_slot(self, request: RunRequest, job: str, slot: datetime) -> SlotAnswer:
        """Enqueue a scheduled request once for its job's cron `slot`, whoever asks."""
        timestamp = int(slot.timestamp())
        deferrer = self.app.configure_task(
            ROTATE_TASK,
            queue=ROTATIONS_QUEUE,
            lock=repository_lock(request),
            queueing_lock=queueing_lock(request),
            priority=PRIORITIES[request.trigger.kind],
            task_kwargs={"request": request_arguments(request), "timestamp": timestamp},
        )
        try:
            job_id = self._call(
                "enqueue a scheduled rotation",
                self.app.job_manager.defer_periodic_job(
                    deferrer.job, periodic_id=job, defer_timestamp=timestamp
                ),
            )
        except procrastinate_errors.AlreadyEnqueued:
            return "already-queued"
        return "queued" if job_id is not None else "slot-already-enqueued"

    def activity(self, repo: str) -> Activity:
        """The running and waiting rotations of `repo`."""
        lock = repository_key(repo)

        async def jobs(status: str) -> list[procrastinate.jobs.Job]:
            found = await self.app.job_manager.list_jobs_async(
                queue=ROTATIONS_QUEUE, task=ROTATE_TASK, status=status, lock=lock
            )
            return list(found)

        running = self._call("read the job queue", jobs("doing"))
        waiting = self._call("read the job queue", jobs("todo"))
        return Activity(
            _job_request(running[0]) if running else None,
            tuple(_job_request(job) for job in waiting),
        )

    def counts(self) -> dict[str, int]:
        """Jobs of the rotations queue by status (`todo`, `doing`, `failed`, …)."""

        async def queues() -> list[dict[str, Any]]:
            return list(await self.app.job_manager.list_queues_async(queue=ROTATIONS_QUEUE))

        for row in self._call("read the job queue", queues()):
            return {key: int(value) for key, value in row.items() if isinstance(value, int)}
        return {}

    def depth(self) -> int:
        """Rotations waiting for a worker."""
        return self.counts().get("todo", 0)

    def running_count(self) -> int:
        """Rotations being run by some worker."""
        return self.counts().get("doing", 0)


def _job_request(job: procrastinate.jobs.Job) -> RunRequest:
    arguments = job.task_kwargs["request"]
    if not isinstance(arguments, dict):
        raise ServiceUnavailable(f"job queue: job {job.id} holds no request; was it written by us?")
    return request_from(arguments)


def _unavailable(action: str, error: BaseException) -> ServiceUnavailable:
    return ServiceUnavailable(
        f"database: could not {action} ({type(error).__name__}); check ROTATION_BOT_DATABASE_URL "
        "and that `rotation-bot migrate` has run"
    )
