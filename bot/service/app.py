"""`rotation-bot serve`: the work queue, the scheduler and the webhook server in one process.

`start_service` wires the pieces and returns them running; `RunningService.stop` shuts down in
the order that loses nothing: the scheduler stops firing, the HTTP server stops accepting, the
chat pool stops, the queue hands back what never started (a scheduled request gets its fire time
back, a chat request an answer), running rotations get a grace period, and the scheduler closes.
`serve_forever` is the command: it starts, waits for SIGTERM or SIGINT, and stops.

Repositories served are `ROTATION_BOT_REPOSITORIES`, or every repository the GitHub App is
installed on (refreshed periodically and whenever an installation webhook arrives).  Each
repository's config (`.github/rotation-bot.yml`) is read the same way a run reads it, under the
repository's lock.
"""

from __future__ import annotations

import logging
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from types import FrameType
from typing import Any, Protocol, cast

from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.server import TcpWSGIServer
from waitress.task import ThreadedTaskDispatcher
from waitress.wasyncore import close_all

from bot.audit import AuditStore
from bot.config import RepoConfig, Settings
from bot.errors import BotError, ConfigError
from bot.forges.base import Forge
from bot.models import RunRequest, RunSummary
from bot.runbook import Runbook
from bot.service.chat import ChatCommands
from bot.service.dashboard.auth import DashboardAuth
from bot.service.dashboard.web import DashboardApp
from bot.service.locks import RepositoryBusy, RepositoryLocks, repository_key
from bot.service.metrics import Metrics
from bot.service.scheduler import RepositoryLister, Scheduler
from bot.service.webhook import MAX_BODY_BYTES, DeliveryLog, WebhookApp
from bot.service.workqueue import RotationQueue, WorkQueue, close_abandoned_runs

log = logging.getLogger(__name__)

DELIVERY_RETENTION = timedelta(days=30)


class ServedPipeline(Protocol):
    """What the service needs from the pipeline."""

    @property
    def audit(self) -> AuditStore:
        """The audit store (its database also holds the jobs and delivery ids)."""
        ...

    @property
    def runbooks(self) -> Mapping[str, Runbook]:
        """The runbooks by name."""
        ...

    @property
    def forge(self) -> Forge:
        """Where proposals go, and where chat commands are answered."""
        ...

    def run(self, request: RunRequest) -> list[RunSummary]:
        """Execute a request."""
        ...

    def open_repo(self, repo: str) -> _OpenedRepo:
        """Open a repository (fetching it) and read its config."""
        ...


class _OpenedRepo(Protocol):
    @property
    def config(self) -> RepoConfig: ...


class _Trigger(Protocol):
    """waitress's loop trigger: runs a callable in the I/O loop's own thread."""

    def pull_trigger(self, thunk: Callable[[], None] | None = None) -> None: ...


@dataclass(frozen=True)
class ServiceOptions:
    """Tunables of the service (defaults suit one small instance).

    Slow clients cost the HTTP server a socket each, never a thread (waitress buffers requests
    in its I/O loop): up to `connection_limit` of them (polled, so past select()'s 1024), each
    allowed `request_read_timeout` seconds to send one whole request and `idle_timeout` seconds
    of silence between requests, so a slowloris dribbling header bytes is dropped and
    `/healthz` keeps answering."""

    workers: int = 2
    queue_capacity: int = 32
    chat_workers: int = 2
    http_threads: int = 4
    max_body: int = MAX_BODY_BYTES
    refresh_interval: timedelta = timedelta(minutes=15)
    shutdown_grace: float = 60.0
    connection_limit: int = 1000
    request_read_timeout: float = 20.0
    idle_timeout: int = 30
    cleanup_interval: int = 2


class ConfigProblems:
    """What was wrong with each served repository's config, recorded as that repository's failed
    run in the audit trail: once per distinct problem, not at every refresh, and forgotten when
    the config reads again.  A repository that is merely busy (another rotation holds its lock)
    has no problem."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit
        self._recorded: dict[str, str] = {}
        self._lock = threading.Lock()

    def __call__(self, repo: str, problem: BotError | None) -> None:
        """Record `problem` for `repo` unless it was the last one recorded (None: it is fine)."""
        if isinstance(problem, RepositoryBusy):
            return
        key = repository_key(repo)
        with self._lock:
            if problem is None or self._recorded.get(key) == problem.message:
                if problem is None:
                    self._recorded.pop(key, None)
                return
            self._recorded[key] = problem.message
        run_id = self.audit.start_run(repo=repo, runbook="-", trigger="schedule", actor="schedule")
        self.audit.append(
            run_id, "open-repository", "failed", problem.as_evidence(), started_at=None
        )
        self.audit.finish_run(run_id, outcome="error", message=problem.message)
        log.warning("repository config problem recorded", extra={"repo": repo, "run": run_id})


class _Channel(HTTPChannel):
    """waitress's channel, remembering when the request it is receiving began."""

    request_began = 0.0

    def received(self, data: bytes) -> bool:
        if data and self.request is None:
            self.request_began = time.time()
        return super().received(data)


class _Server(TcpWSGIServer):
    """waitress's TCP server that also drops a connection still sending one request after
    `request_read_timeout` seconds (waitress's own timeout only counts silence, which a client
    sending one byte every few seconds never leaves)."""

    channel_class = _Channel
    request_read_timeout = 20.0

    def maintenance(self, now: float) -> None:
        super().maintenance(int(now))
        cutoff = now - self.request_read_timeout
        channels = cast(dict[int, _Channel], self.active_channels)
        for channel in channels.values():
            if channel.request is not None and channel.request_began < cutoff:
                channel.will_close = True


def _connection_limit(wanted: int) -> int:
    """`wanted`, or fewer when the open-files limit would not allow that many sockets."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return wanted if soft == resource.RLIM_INFINITY else max(min(wanted, soft - 64), 16)


def _http_server(
    app: WebhookApp, sockets: dict[int, Any], host: str, port: int, options: ServiceOptions
) -> _Server:
    adjustments = Adjustments(
        host=host,
        port=port,
        threads=options.http_threads,
        # The app answers 413 itself (and counts it); waitress stops anything far larger.
        max_request_body_size=options.max_body * 4,
        channel_timeout=options.idle_timeout,
        cleanup_interval=options.cleanup_interval,
        connection_limit=_connection_limit(options.connection_limit),
        asyncore_use_poll=True,
        ident="rotation-bot",
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(options.http_threads)
    server = _Server(app, sockets, dispatcher=dispatcher, adj=adjustments)
    server.request_read_timeout = options.request_read_timeout
    return server


@dataclass(frozen=True)
class HttpServer:
    """A running HTTP server (waitress in a thread); `url` is where it listens."""

    url: str
    _server: _Server
    _sockets: dict[int, Any]
    _thread: threading.Thread

    def stop(self) -> None:
        """Let the request threads finish, then close the listener and every connection."""
        # A request thread that finishes wakes the I/O loop through the trigger's pipe: they stop
        # first, so that none writes to the pipe once it is closed (EBADF, or a reused fd).
        self._server.task_dispatcher.shutdown(timeout=1)
        # From inside waitress's I/O loop (its own thread); with its socket map empty the loop
        # returns.
        cast(_Trigger, self._server.trigger).pull_trigger(lambda: close_all(self._sockets))
        self._thread.join(5)


def start_http(app: WebhookApp, listen: str, options: ServiceOptions) -> HttpServer:
    """Serve `app` on `listen` (`host:port`) in a background thread."""
    host, port = parse_listen(listen)
    sockets: dict[int, Any] = {}
    server = _http_server(app, sockets, host, port, options)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    url = f"http://{host if ':' not in host else f'[{host}]'}:{server.getsockname()[1]}"
    log.info("serving", extra={"url": url})
    return HttpServer(url, server, sockets, thread)


def parse_listen(value: str) -> tuple[str, int]:
    """`host:port` (IPv6 as `[::1]:8080`) → (host, port)."""
    host, _, port = value.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"ROTATION_BOT_LISTEN={value!r} must look like 127.0.0.1:8080")
    return host, int(port)


@dataclass(frozen=True)
class RunningService:
    """The started service; `url` is where it listens."""

    queue: WorkQueue
    scheduler: Scheduler
    chat: ChatCommands | None
    app: WebhookApp
    options: ServiceOptions
    http: HttpServer
    _stopped: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        """Where the HTTP server listens."""
        return self.http.url

    def stop(self) -> list[RunRequest]:
        """Shut down gracefully; returns the requests still running after the grace period."""
        if self._stopped.is_set():
            return []
        self._stopped.set()
        log.info("shutting down")
        self.scheduler.pause()
        self.app.stopping.set()  # deliveries now get 503, so GitHub marks them for redelivery
        if self.chat is not None:
            self.chat.close()
        still = self.queue.stop(self.options.shutdown_grace)
        self.scheduler.shutdown()
        self.http.stop()
        return still


def start_service(
    settings: Settings,
    pipeline: ServedPipeline,
    *,
    repositories: RepositoryLister,
    options: ServiceOptions = ServiceOptions(),
    stopping: threading.Event | None = None,
) -> RunningService:
    """Start the queue, the scheduler and the HTTP server; returns once all are running.

    `stopping` is set when shutdown begins (share it with the pipeline so that a running
    rotation stops at its next step boundary, marked interrupted)."""
    parse_listen(settings.listen)  # a bad address fails before anything starts
    audit = pipeline.audit
    locks = RepositoryLocks(settings.state_dir / "locks")
    closed = close_abandoned_runs(audit, locks)
    if closed:
        log.warning(
            "runs left unfinished by a previous process marked interrupted",
            extra={"runs": ",".join(run[:8] for run in closed)},
        )
    deliveries = DeliveryLog(audit.engine)
    deliveries.prune(DELIVERY_RETENTION)
    metrics = Metrics()
    queue = WorkQueue(
        pipeline,
        locks=locks,
        metrics=metrics,
        workers=options.workers,
        capacity=options.queue_capacity,
        stopping=stopping,
        run_timeout=settings.run_timeout,
    )

    scheduler = Scheduler(
        engine=audit.engine,
        queue=queue,
        runbooks=sorted(pipeline.runbooks),
        default_schedule=settings.schedule,
        repositories=repositories,
        repo_config=config_reader(pipeline, locks),
        refresh_interval=options.refresh_interval,
        report=ConfigProblems(audit),
    )
    chat = chat_commands(
        settings,
        pipeline,
        queue=queue,
        metrics=metrics,
        next_runs=scheduler.next_runs,
        options=options,
    )
    dashboard_auth = DashboardAuth.from_settings(settings)
    if not dashboard_auth.enabled:
        log.info("dashboard off: set ROTATION_BOT_DASHBOARD_TOKEN to serve it")
    app = WebhookApp(
        secret=settings.webhook_secret,
        deliveries=deliveries,
        metrics=metrics,
        chat=chat,
        serves=scheduler.serves,
        on_installation_change=scheduler.refresh_soon,
        max_body=options.max_body,
        dashboard=DashboardApp(audit=audit, auth=dashboard_auth, runbooks=pipeline.runbooks),
    )
    queue.start()
    scheduler.start()
    scheduler.every(
        timedelta(days=1), lambda: deliveries.prune(DELIVERY_RETENTION), "prune-deliveries"
    )
    http = start_http(app, settings.listen, options)
    return RunningService(queue, scheduler, chat, app, options, http)


def config_reader(pipeline: ServedPipeline, locks: RepositoryLocks) -> Callable[[str], RepoConfig]:
    """Reads a repository's config for the scheduler, refused (`RepositoryBusy`) while a
    rotation holds the repository's lock."""

    def read_config(repo: str) -> RepoConfig:
        with locks.hold(repo, timeout=0):
            return pipeline.open_repo(repo).config

    return read_config


def chat_commands(
    settings: Settings,
    pipeline: ServedPipeline,
    *,
    queue: RotationQueue,
    metrics: Metrics,
    next_runs: Callable[[str], Mapping[str, datetime | None]],
    options: ServiceOptions,
) -> ChatCommands | None:
    """The chat commands when the forge hosts comments (None otherwise); a webhook or chat
    commands left off is logged with what turns them on."""
    chat = None
    if pipeline.forge.hosts_comments:
        chat = ChatCommands(
            forge=pipeline.forge,
            queue=queue,
            runbooks=pipeline.runbooks,
            audit=pipeline.audit,
            metrics=metrics,
            next_runs=next_runs,
            workers=options.chat_workers,
        )
    if not settings.webhook_secret:
        log.warning("webhook disabled: set ROTATION_BOT_WEBHOOK_SECRET to accept deliveries")
    elif chat is None:
        log.warning("chat commands disabled: they need GitHub credentials")
    return chat


def repository_lister(settings: Settings, forge: Forge) -> RepositoryLister:
    """The configured repositories, or the App's installations when none are configured."""
    if settings.repositories:
        configured = tuple(settings.repositories)
        return lambda: configured
    if settings.github_app_id:
        return forge.list_repositories
    raise ConfigError(
        "nothing to serve: set ROTATION_BOT_REPOSITORIES (owner/name, comma-separated) or "
        "GitHub App credentials (ROTATION_BOT_GITHUB_APP_ID and ROTATION_BOT_GITHUB_APP_KEY)"
    )


def serve_forever(
    settings: Settings,
    pipeline: ServedPipeline,
    *,
    options: ServiceOptions = ServiceOptions(),
    stopping: threading.Event | None = None,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT, then shut down gracefully.

    Chat commands are answered through the pipeline's forge (when people comment there) and,
    without `ROTATION_BOT_REPOSITORIES`, every repository the App is installed on is served.
    `stopping`, shared with the pipeline, is set when shutdown begins.
    """
    forge = pipeline.forge
    running = start_service(
        settings,
        pipeline,
        repositories=repository_lister(settings, forge),
        options=options,
        stopping=stopping,
    )
    try:
        with stop_on_signals() as stop:
            if on_ready is not None:
                on_ready(running.url)
            while not stop.wait(timeout=1.0):
                pass
    finally:
        running.stop()


@contextmanager
def stop_on_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets (logged) while the block runs; the previous signal
    handlers are back when it ends."""
    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("signal received", extra={"signal": signal.Signals(signum).name})
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
