"""`serve --role worker`: procrastinate workers that run the fleet's rotations.

Each process runs two procrastinate workers on one event loop: one on the `rotations` queue
(`concurrency` rotations at a time, each in a thread, since the pipeline is synchronous) and one
on the `housekeeping` queue, which runs `retry_stalled_jobs` every heartbeat interval (a
procrastinate periodic task, deferred once per interval for the whole fleet): a rotation whose
worker stopped sending heartbeats for three intervals (killed, its machine gone) goes back to
the queue, and another worker runs it.  A rotation that starts again after such a retry first
closes, as interrupted, the runs its earlier attempt left open: the job's lock is held, so no
other rotation of that repository can be running.

A transient failure (an unreachable service: `ServiceUnavailable`, a repository a local
`rotation-bot run` holds, the worker shutting down) is retried with exponential backoff, up to
`max_attempts`; a chat command is answered once, when its job is done for good.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import procrastinate
from procrastinate.job_context import JobContext

from bot.audit import AuditStore
from bot.errors import EXIT_UNAVAILABLE, ServiceUnavailable
from bot.forges.base import Forge
from bot.service.chat import AnswerComment
from bot.service.distributed.fleet import (
    ROTATE_TASK,
    ROTATIONS_QUEUE,
    comment_from,
    make_app,
    request_from,
)
from bot.service.locks import RepositoryLocks, repository_key
from bot.service.workqueue import SERVICE_TRIGGERS, Runner, WorkResult, execute

log = logging.getLogger(__name__)

HOUSEKEEPING_QUEUE = "housekeeping"
RETRY_STALLED_TASK = "rotation_bot.retry_stalled_jobs"


@dataclass(frozen=True)
class WorkerOptions:
    """Tunables of one worker process."""

    concurrency: int = 1
    heartbeat: float = 10.0
    max_attempts: int = 5
    retry_wait: int = 10  # seconds before the first retry; then about three times as long
    poll_interval: float = 2.0  # besides LISTEN/NOTIFY: a job freed by a lock is seen this soon
    shutdown_grace: float = 60.0


class RetryLater(ServiceUnavailable):
    """A rotation that could not finish for a passing reason; procrastinate runs it again."""

    slug = "retry"


def transient(result: WorkResult) -> bool:
    """Whether `result` failed for a reason that may pass (worth another attempt)."""
    return (
        not result.started
        or result.shut_down
        or any(summary.exit_code == EXIT_UNAVAILABLE for summary in result.summaries)
    )


def close_earlier_attempts(audit: AuditStore, repo: str) -> list[str]:
    """Close, as interrupted, the service runs of `repo` left open; only call it while holding
    the repository's fleet-wide job lock (then none of them can still be running)."""
    key = repository_key(repo)
    closed = []
    for run in audit.list_runs(limit=200):
        if (
            run["outcome"] is None
            and run["trigger"] in SERVICE_TRIGGERS
            and repository_key(run["repo"]) == key
        ):
            audit.finish_run(
                run["id"],
                outcome="interrupted",
                message="its worker stopped before the run finished; the rotation was retried "
                "by another attempt (see the next run of this repository)",
            )
            closed.append(str(run["id"]))
    return closed


@dataclass(frozen=True)
class Rotations:
    """The body of the rotation task, with what it needs from the process."""

    runner: Runner
    audit: AuditStore
    locks: RepositoryLocks
    stopping: threading.Event
    run_timeout: float | None
    answerer: Forge | None  # where chat commands are answered (None: nobody comments there)
    max_attempts: int

    def __call__(
        self,
        context: JobContext,
        request: Mapping[str, Any],
        answer: Mapping[str, Any] | None = None,
        timestamp: int | None = None,
    ) -> None:
        """Run one job: close what an earlier attempt left open, rotate, retry or answer."""
        run_request = request_from(request)
        attempts = context.job.attempts
        if attempts:
            closed = close_earlier_attempts(self.audit, run_request.repo)
            if closed:
                log.warning(
                    "runs of an earlier attempt closed as interrupted",
                    extra={"repo": run_request.repo, "runs": ",".join(run[:8] for run in closed)},
                )
        result = execute(
            self.runner,
            run_request,
            locks=self.locks,
            stopping=self.stopping,
            run_timeout=self.run_timeout,
            wait=False,
        )
        if transient(result) and attempts + 1 < self.max_attempts:
            reason = result.error or "; ".join(s.message for s in result.summaries) or "busy"
            log.warning(
                "rotation will be retried",
                extra={"repo": run_request.repo, "attempt": attempts + 1, "reason": reason},
            )
            raise RetryLater(f"{run_request.repo}: {reason}", repo=run_request.repo)
        if answer is not None and self.answerer is not None:
            AnswerComment(self.answerer, comment_from(answer))(result)
        log.info(
            "job done",
            extra={
                "repo": run_request.repo,
                "slot": timestamp,
                "result": ",".join(summary.outcome for summary in result.summaries) or result.error,
            },
        )


def build_app(database_url: str, rotations: Rotations, options: WorkerOptions) -> procrastinate.App:
    """The procrastinate app of a worker process, its two tasks registered."""
    app = make_app(database_url, pool_size=options.concurrency + 4)
    stalled_after = options.heartbeat * 3
    app.task(
        name=ROTATE_TASK,
        queue=ROTATIONS_QUEUE,
        pass_context=True,
        retry=procrastinate.RetryStrategy(
            max_attempts=options.max_attempts,
            wait=options.retry_wait,
            exponential_wait=3,
            retry_exceptions={RetryLater},
        ),
    )(rotations)

    async def retry_stalled_jobs(timestamp: int) -> None:
        for job in await app.job_manager.get_stalled_jobs(seconds_since_heartbeat=stalled_after):
            log.warning(
                "job of a worker that stopped sending heartbeats retried",
                extra={"job": job.id, "lock": job.lock},
            )
            await app.job_manager.retry_job(job)

    every = max(int(options.heartbeat), 1)
    app.periodic(cron=f"* * * * * */{every}")(
        app.task(name=RETRY_STALLED_TASK, queue=HOUSEKEEPING_QUEUE, queueing_lock="stalled")(
            retry_stalled_jobs
        )
    )
    return app


async def run_workers(
    app: procrastinate.App, options: WorkerOptions, stop: asyncio.Event, name: str
) -> None:
    """Run the rotation and housekeeping workers until `stop` is set, then stop them
    gracefully (running rotations get `shutdown_grace` seconds)."""
    common: dict[str, Any] = {
        "install_signal_handlers": False,
        "update_heartbeat_interval": options.heartbeat,
        "stalled_worker_timeout": options.heartbeat * 3,
        "fetch_job_polling_interval": options.poll_interval,
        "shutdown_graceful_timeout": options.shutdown_grace,
        "delete_jobs": "successful",
    }
    async with app.open_async():
        tasks = [
            asyncio.create_task(
                app.run_worker_async(
                    queues=[ROTATIONS_QUEUE],
                    concurrency=options.concurrency,
                    name=name,
                    **common,
                )
            ),
            asyncio.create_task(
                app.run_worker_async(
                    queues=[HOUSEKEEPING_QUEUE],
                    concurrency=1,
                    name=f"{name}-housekeeping",
                    **common,
                )
            ),
        ]
        waiter = asyncio.create_task(stop.wait())
        _done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for task in tasks:
            task.cancel()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        waiter.cancel()
        for result in results:
            if isinstance(result, Exception):
                raise result


@dataclass
class WorkerProcess:
    """The worker role, run in a thread of its own (its event loop)."""

    database_url: str
    rotations: Rotations
    options: WorkerOptions
    name: str = ""
    _loop: asyncio.AbstractEventLoop | None = None
    _stop: asyncio.Event | None = None
    _thread: threading.Thread | None = None
    _ready: threading.Event | None = None
    failure: BaseException | None = None

    def start(self, on_stopped: Callable[[], None] | None = None) -> None:
        """Start the workers; `on_stopped` is called if they stop by themselves."""
        name = self.name or f"rotation-bot-{socket.gethostname()}"
        app = build_app(self.database_url, self.rotations, self.options)
        ready = threading.Event()
        self._ready = ready

        def main() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            self._stop = asyncio.Event()
            ready.set()
            try:
                loop.run_until_complete(run_workers(app, self.options, self._stop, name))
            except BaseException as error:
                self.failure = error
                log.error("worker stopped", extra={"error": type(error).__name__})
            finally:
                loop.close()
                if on_stopped is not None:
                    on_stopped()

        self._thread = threading.Thread(target=main, name="worker", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        """Stop taking jobs; running rotations (told through `stopping`) get the grace period."""
        self.rotations.stopping.set()
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            stop = self._stop
            with contextlib.suppress(RuntimeError):  # the loop already ended
                self._loop.call_soon_threadsafe(stop.set)
        if self._thread is not None:
            self._thread.join(self.options.shutdown_grace + 10)
