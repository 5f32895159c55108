"""The work queue of the unattended service: every trigger's rotations go through it.

Cron jobs and chat commands submit `RunRequest`s; a bounded queue feeds a few worker threads,
which never start two requests for the same repository at once (the dispatcher skips busy
repositories) and hold the repository's cross-process lock around each run, so a
`rotation-bot run` from the command line cannot interleave either.  A second request for a busy
repository either waits in the queue (`if_busy="wait"`, the schedule) or is refused as
"already running" (`if_busy="reject"`, chat).  On shutdown the queue stops taking work, hands back
what never started, and gives running requests a grace period to finish; a request still
downloading is cancelled at its next chunk (the pipeline and the HTTP helper share the stop
event) and recorded interrupted.  Each request runs within `run_timeout` seconds
(`ROTATION_BOT_RUN_TIMEOUT`); past it, the request ends with that reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Literal, Protocol

from bot.audit import AuditStore
from bot.cancellation import RunDeadlineExceeded, ShutdownRequested, run_deadline
from bot.errors import BotError, redact
from bot.models import RunRequest, RunSummary
from bot.service.locks import RepositoryBusy, RepositoryLocks, repository_key
from bot.service.metrics import Metrics

log = logging.getLogger(__name__)

IfBusy = Literal["wait", "reject"]
Admission = Literal["queued", "already-running", "already-queued", "queue-full", "stopping"]
SERVICE_TRIGGERS = ("schedule", "chat")


class Runner(Protocol):
    """What executes a request (the pipeline)."""

    def run(self, request: RunRequest) -> list[RunSummary]:
        """Execute the request's runbooks; one summary per audited run."""
        ...


@dataclass(frozen=True)
class WorkResult:
    """What became of an accepted request: its summaries, an error, or not started (or stopped
    by shutdown while it ran)."""

    request: RunRequest
    summaries: tuple[RunSummary, ...] = ()
    error: str | None = None
    started: bool = True
    shut_down: bool = False

    @property
    def interrupted(self) -> bool:
        """Whether shutdown stopped the request before it (or one of its runs) completed."""
        return (
            not self.started
            or self.shut_down
            or any(item.outcome == "interrupted" for item in self.summaries)
        )


Callback = Callable[[WorkResult], None]


@dataclass(frozen=True)
class Activity:
    """What the service is doing for one repository right now."""

    running: RunRequest | None
    queued: tuple[RunRequest, ...]
    since: float | None = None


class RotationQueue(Protocol):
    """Where the chat commands (and the schedule) send requests: this module's `WorkQueue` in
    one process, or the fleet's queue on PostgreSQL (bot/service/distributed/)."""

    def submit(
        self, request: RunRequest, *, if_busy: IfBusy, on_done: Callback | None = None
    ) -> Admission:
        """Queue `request`, or say why not."""
        ...

    def activity(self, repo: str) -> Activity:
        """The running and queued requests of one repository."""
        ...


@dataclass(frozen=True)
class _Item:
    request: RunRequest
    on_done: Callback | None
    enqueued: float = field(default_factory=time.monotonic)

    @property
    def key(self) -> str:
        return repository_key(self.request.repo)

    def same_work(self, request: RunRequest) -> bool:
        return (
            repository_key(request.repo) == self.key
            and request.runbooks == self.request.runbooks
            and request.target == self.request.target
            and request.action == self.request.action
        )


class WorkQueue:
    """A bounded queue and worker threads running requests, one per repository at a time."""

    def __init__(
        self,
        runner: Runner,
        *,
        locks: RepositoryLocks,
        metrics: Metrics,
        workers: int = 2,
        capacity: int = 32,
        stopping: threading.Event | None = None,
        run_timeout: float | None = None,
    ) -> None:
        """`stopping` is set when shutdown begins; give the same event to the runner (and its
        HTTP helper) so that a running rotation stops at its next step boundary or download
        chunk.  `run_timeout`: seconds each request may run (None: no limit)."""
        if workers < 1 or capacity < 1:
            raise ValueError("workers and capacity must be at least 1")
        self.runner = runner
        self.run_timeout = run_timeout
        self.locks = locks
        self.metrics = metrics
        self.capacity = capacity
        self.stopping = stopping or threading.Event()
        self._condition = threading.Condition()
        self._pending: list[_Item] = []
        self._running: dict[str, tuple[_Item, float]] = {}
        self._threads = [
            threading.Thread(target=self._work, name=f"rotation-worker-{index}", daemon=True)
            for index in range(workers)
        ]
        metrics.watch_queue(self.depth, self.running_count)

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker threads."""
        for thread in self._threads:
            thread.start()

    def stop(self, grace: float) -> list[RunRequest]:
        """Take no more work, hand back what never started (callbacks see `started=False`), and
        wait up to `grace` seconds for running requests; returns those still running."""
        self.stopping.set()
        with self._condition:
            dropped, self._pending = self._pending, []
            self._condition.notify_all()
        for item in dropped:
            log.info("request dropped at shutdown", extra={"repo": item.request.repo})
            _call(item.on_done, WorkResult(item.request, started=False))
        deadline = time.monotonic() + grace
        for thread in self._threads:
            if thread.is_alive():
                thread.join(max(deadline - time.monotonic(), 0.0))
        with self._condition:
            still = [item.request for item, _ in self._running.values()]
        for request in still:
            log.warning("request still running at shutdown", extra={"repo": request.repo})
        return still

    # --- submitting --------------------------------------------------------------------

    def submit(
        self, request: RunRequest, *, if_busy: IfBusy, on_done: Callback | None = None
    ) -> Admission:
        """Queue `request`; `on_done` is called exactly once for every "queued" answer."""
        key = repository_key(request.repo)
        with self._condition:
            if self.stopping.is_set():
                return "stopping"
            if any(item.same_work(request) for item in self._pending):
                return "already-queued"
            if if_busy == "reject" and key in self._running:
                return "already-running"
            if len(self._pending) >= self.capacity:
                return "queue-full"
        if if_busy == "reject" and self.locks.is_busy(request.repo):
            return "already-running"
        with self._condition:
            if self.stopping.is_set():
                return "stopping"
            self._pending.append(_Item(request, on_done))
            self._condition.notify()
        return "queued"

    # --- reading -----------------------------------------------------------------------

    def depth(self) -> int:
        """Requests waiting for a worker."""
        with self._condition:
            return len(self._pending)

    def running_count(self) -> int:
        """Requests being executed."""
        with self._condition:
            return len(self._running)

    def activity(self, repo: str) -> Activity:
        """The running and queued requests of one repository."""
        key = repository_key(repo)
        with self._condition:
            running = self._running.get(key)
            queued = tuple(item.request for item in self._pending if item.key == key)
        if running is None:
            return Activity(None, queued)
        return Activity(running[0].request, queued, running[1])

    # --- working -----------------------------------------------------------------------

    def _next(self) -> _Item | None:
        with self._condition:
            while True:
                if self.stopping.is_set():
                    return None
                for index, item in enumerate(self._pending):
                    if item.key not in self._running:
                        del self._pending[index]
                        self._running[item.key] = (item, time.time())
                        return item
                self._condition.wait()

    def _work(self) -> None:
        while (item := self._next()) is not None:
            try:
                result = self._execute(item.request)
            finally:
                with self._condition:
                    del self._running[item.key]
                    self._condition.notify_all()
            self.metrics.record_runs(item.request.trigger.kind, result.summaries)
            if result.error is not None:
                self.metrics.runs.labels(trigger=item.request.trigger.kind, outcome="error").inc()
            _call(item.on_done, result)

    def _execute(self, request: RunRequest) -> WorkResult:
        return execute(
            self.runner,
            request,
            locks=self.locks,
            stopping=self.stopping,
            run_timeout=self.run_timeout,
            wait=True,
        )


def execute(
    runner: Runner,
    request: RunRequest,
    *,
    locks: RepositoryLocks,
    stopping: threading.Event,
    run_timeout: float | None,
    wait: bool,
) -> WorkResult:
    """Run one request under its repository's lock (`wait`: until the lock is free or `stopping`
    is set; else not at all when it is held) and its run deadline; every outcome, a crash
    included, becomes the `WorkResult`."""
    try:
        with locks.hold(request.repo, timeout=-1 if wait else 0, stop=stopping):
            log.info(
                "rotation started", extra={"repo": request.repo, "trigger": request.trigger.kind}
            )
            with run_deadline(run_timeout) if run_timeout else nullcontext():
                summaries = tuple(runner.run(request))
    except RepositoryBusy:
        return WorkResult(request, started=False)
    except ShutdownRequested as stopped:
        log.warning("rotation interrupted by shutdown", extra={"repo": request.repo})
        return WorkResult(request, error=stopped.reason, shut_down=True)
    except RunDeadlineExceeded as late:
        log.warning("rotation stopped at its deadline", extra={"repo": request.repo})
        return WorkResult(request, error=late.reason)
    except BotError as error:
        log.warning("rotation failed", extra={"repo": request.repo, "error": error.message})
        return WorkResult(request, error=error.message)
    except Exception as error:
        log.exception("rotation crashed", extra={"repo": request.repo})
        return WorkResult(request, error=redact(f"internal error: {type(error).__name__}: {error}"))
    for summary in summaries:
        log.info(
            "rotation finished",
            extra={
                "repo": request.repo,
                "runbook": summary.runbook,
                "outcome": summary.outcome,
                "run": summary.run_id,
            },
        )
    return WorkResult(request, summaries)


def _call(callback: Callback | None, result: WorkResult) -> None:
    if callback is None:
        return
    try:
        callback(result)
    except Exception:
        log.exception("callback failed", extra={"repo": result.request.repo})


def close_abandoned_runs(
    audit: AuditStore, locks: RepositoryLocks, *, limit: int = 500
) -> list[str]:
    """Mark runs the service started but never finished (the process was killed) as interrupted.

    A run is only closed when nobody holds its repository's lock, so a rotation that another
    process is still executing is left alone.  Returns the ids closed.
    """
    closed = []
    for run in audit.list_runs(limit=limit):
        if run["outcome"] is not None or run["trigger"] not in SERVICE_TRIGGERS:
            continue
        if locks.is_busy(run["repo"]):
            continue
        audit.finish_run(
            run["id"],
            outcome="interrupted",
            message="the service stopped before this run finished; nothing was published by it",
        )
        closed.append(str(run["id"]))
    return closed
