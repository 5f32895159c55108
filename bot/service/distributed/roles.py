"""`rotation-bot serve --role web|worker|scheduler|all` on PostgreSQL: the roles, wired.

- web: the webhook (signatures checked, each `X-GitHub-Delivery` recorded under a unique key in
  PostgreSQL, so a replayed delivery is handled once across replicas and restarts), chat
  commands (permission checked, then enqueued), `/healthz`, `/metrics`, the dashboard;
  stateless, any number of replicas.
- worker: runs rotations (bot/service/distributed/worker.py); any number.
- scheduler: APScheduler, active on one replica at a time (bot/service/distributed/leader.py).
- all: the three in one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Literal

from bot.config import Settings
from bot.errors import BotError, ServiceUnavailable
from bot.forges.base import Forge
from bot.service.app import (
    DELIVERY_RETENTION,
    ConfigProblems,
    HttpServer,
    ServedPipeline,
    ServiceOptions,
    chat_commands,
    config_reader,
    repository_lister,
    start_http,
    stop_on_signals,
)
from bot.service.chat import ChatCommands
from bot.service.dashboard.auth import DashboardAuth
from bot.service.dashboard.web import DashboardApp
from bot.service.distributed.fleet import FleetQueue, conninfo
from bot.service.distributed.leader import LeaderElection, LeaderLock
from bot.service.distributed.worker import Rotations, WorkerOptions, WorkerProcess
from bot.service.locks import RepositoryLocks, repository_key
from bot.service.metrics import Metrics
from bot.service.scheduler import RepositoryLister, Scheduler, stored_next_runs
from bot.service.webhook import DeliveryLog, WebhookApp

log = logging.getLogger(__name__)

Role = Literal["web", "worker", "scheduler", "all"]
ROLES: tuple[Role, ...] = ("web", "worker", "scheduler", "all")
DEFAULT_OPTIONS = ServiceOptions()


class ServedRepositories:
    """The served repositories for a web replica (which runs no scheduler): the configured list
    or the App's installations, re-read every `interval` and after an installation event."""

    def __init__(self, repositories: RepositoryLister, interval: timedelta) -> None:
        self.repositories = repositories
        self.interval = interval.total_seconds()
        self._keys: frozenset[str] = frozenset()
        self._read_at: float | None = None
        self._lock = threading.Lock()

    def serves(self, repo: str) -> bool:
        """Whether `repo` is served (the list is re-read when older than the interval)."""
        with self._lock:
            stale = self._read_at is None or time.monotonic() - self._read_at > self.interval
        if stale:
            try:
                keys = frozenset(repository_key(name) for name in self.repositories() if name)
            except BotError as error:
                log.warning(
                    "repository list unavailable, keeping it", extra={"error": error.message}
                )
            else:
                with self._lock:
                    self._keys, self._read_at = keys, time.monotonic()
        with self._lock:
            return repository_key(repo) in self._keys

    def refresh_soon(self) -> None:
        """Re-read the list at the next question (an installation changed)."""
        with self._lock:
            self._read_at = None


@dataclass
class RunningRoles:
    """The roles this process runs; `stop` ends them in the order that loses nothing."""

    fleet: FleetQueue
    http: HttpServer | None = None
    app: WebhookApp | None = None
    chat: ChatCommands | None = None
    election: LeaderElection | None = None
    worker: WorkerProcess | None = None
    stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str | None:
        """Where the web role listens (None without it)."""
        return self.http.url if self.http is not None else None

    def stop(self) -> None:
        """Stop firing, stop accepting, stop taking jobs (running ones get their grace), close."""
        if self.stopped.is_set():
            return
        self.stopped.set()
        log.info("shutting down")
        if self.election is not None:
            self.election.stop()
        if self.app is not None:
            self.app.stopping.set()
        if self.chat is not None:
            self.chat.close()
        if self.worker is not None:
            self.worker.stop()
        if self.http is not None:
            self.http.stop()
        self.fleet.close()


def start_roles(
    settings: Settings,
    pipeline: ServedPipeline,
    *,
    role: Role,
    repositories: RepositoryLister,
    options: ServiceOptions = DEFAULT_OPTIONS,
    worker_options: WorkerOptions | None = None,
    stopping: threading.Event | None = None,
    leader_poll: float = 5.0,
) -> RunningRoles:
    """Start `role` (or all three) against the database in `settings`."""
    database_url = settings.resolved_database_url
    audit = pipeline.audit
    # procrastinate logs every job at INFO (with its arguments): only its warnings and errors
    logging.getLogger("procrastinate").setLevel(logging.WARNING)
    wanted: set[str] = {"web", "worker", "scheduler"} if role == "all" else {role}
    fleet = FleetQueue(database_url)
    running = RunningRoles(fleet)
    try:
        locks = RepositoryLocks(settings.state_dir / "locks")
        if "worker" in wanted:
            worker_options = worker_options or WorkerOptions(
                heartbeat=settings.worker_heartbeat, concurrency=settings.worker_concurrency
            )
            forge = pipeline.forge
            running.worker = WorkerProcess(
                database_url,
                Rotations(
                    runner=pipeline,
                    audit=audit,
                    locks=locks,
                    stopping=stopping or threading.Event(),
                    run_timeout=settings.run_timeout,
                    answerer=forge if forge.hosts_comments else None,
                    max_attempts=worker_options.max_attempts,
                ),
                worker_options,
            )
            running.worker.start()
        if "scheduler" in wanted:
            deliveries = DeliveryLog(audit.engine)

            def make_scheduler() -> Scheduler:
                scheduler = Scheduler(
                    engine=audit.engine,
                    defer=fleet.defer_slot,
                    runbooks=sorted(pipeline.runbooks),
                    default_schedule=settings.schedule,
                    repositories=repositories,
                    repo_config=config_reader(pipeline, locks),
                    refresh_interval=options.refresh_interval,
                    report=ConfigProblems(audit),
                )
                # the active scheduler also keeps the delivery log short (the web role has no
                # timer of its own)
                scheduler.every(
                    timedelta(days=1),
                    lambda: deliveries.prune(DELIVERY_RETENTION),
                    "prune-deliveries",
                )
                return scheduler

            running.election = LeaderElection(
                LeaderLock(conninfo(database_url)), make_scheduler, poll=leader_poll
            )
            running.election.start()
        if "web" in wanted:
            running.app, running.chat = _web_app(settings, pipeline, fleet, repositories, options)
            running.http = start_http(running.app, settings.listen, options)
    except BaseException:
        running.stop()
        raise
    return running


def _web_app(
    settings: Settings,
    pipeline: ServedPipeline,
    fleet: FleetQueue,
    repositories: RepositoryLister,
    options: ServiceOptions,
) -> tuple[WebhookApp, ChatCommands | None]:
    audit = pipeline.audit
    metrics = Metrics()
    metrics.watch_queue(fleet.depth, fleet.running_count)
    served = ServedRepositories(repositories, options.refresh_interval)
    chat = chat_commands(
        settings,
        pipeline,
        queue=fleet,
        metrics=metrics,
        next_runs=lambda repo: stored_next_runs(audit.engine, repo),
        options=options,
    )
    app = WebhookApp(
        secret=settings.webhook_secret,
        deliveries=DeliveryLog(audit.engine),
        metrics=metrics,
        chat=chat,
        serves=served.serves,
        on_installation_change=served.refresh_soon,
        max_body=options.max_body,
        dashboard=DashboardApp(
            audit=audit, auth=DashboardAuth.from_settings(settings), runbooks=pipeline.runbooks
        ),
    )
    return app, chat


def serve_roles(
    settings: Settings,
    pipeline: ServedPipeline,
    *,
    role: Role,
    options: ServiceOptions = DEFAULT_OPTIONS,
    stopping: threading.Event | None = None,
    on_ready: Callable[[str | None], None] | None = None,
) -> None:
    """Serve `role` until SIGTERM or SIGINT (or until the worker stops by itself), then stop."""
    forge = pipeline.forge
    running = start_roles(
        settings,
        pipeline,
        role=role,
        repositories=_lister(settings, forge, role),
        options=options,
        stopping=stopping,
    )
    try:
        with stop_on_signals() as stop:
            if on_ready is not None:
                on_ready(running.url)
            while not stop.wait(timeout=1.0):
                if running.worker is not None and running.worker.failure is not None:
                    failure = running.worker.failure
                    raise ServiceUnavailable(
                        f"job queue: the worker stopped ({type(failure).__name__}: "
                        f"{str(failure)[:200]}); check ROTATION_BOT_DATABASE_URL and that "
                        "`rotation-bot migrate` has run"
                    ) from failure
    finally:
        running.stop()


def _lister(settings: Settings, forge: Forge, role: Role) -> RepositoryLister:
    """The served repositories (a worker alone needs none: its jobs name them)."""
    if role == "worker":
        return _nothing
    return repository_lister(settings, forge)


def _nothing() -> Iterable[str]:
    return ()
