"""The one HTTP helper every source uses: deadlines, bounded retries, size caps, clear errors.

Retries (tenacity) cover connection errors, 429 and 5xx, honouring `Retry-After` up to a cap;
anything else is returned to the caller.  Bodies are streamed and refused past a size cap, so a
hostile or broken server cannot exhaust memory.  Every request has an overall deadline (all
attempts, waits and body bytes together, not a per-read timeout), so a server that sends one
byte every 15 seconds cannot hold a run forever; a run's own deadline and the process's stop
event (`bot.cancellation`) are checked between body chunks and before every attempt, so shutdown
cancels a download at its next chunk.  Every failure becomes a `ServiceUnavailable` that names
the host; cancellation raises `Cancelled`.
"""

from __future__ import annotations

import json
import logging
import math
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx
from tenacity import (
    RetryCallState,
    retry,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
)

from bot.cancellation import check, current_deadline
from bot.errors import InvalidRemoteData, ServiceUnavailable, redact
from bot.limits import check_json_nesting

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
REQUEST_DEADLINE = 300.0
JSON_LIMIT = 64 * 1024 * 1024
USER_AGENT = "rotation-bot/0.1 (+https://github.com/rotation-bot/rotation-bot)"
MAX_RETRY_AFTER = 30.0
_SERVER_BACKOFF: Callable[[RetryCallState], float] = wait_exponential(multiplier=0.5, max=5)
_CONNECT_BACKOFF: Callable[[RetryCallState], float] = wait_exponential(multiplier=0.05, max=1)


class _RetryableError(Exception):
    """A response worth retrying (429, 5xx), carrying its Retry-After."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(f"HTTP {response.status_code}")
        self.response = response


def _wait(state: RetryCallState) -> float:
    error = state.outcome.exception() if state.outcome else None
    if isinstance(error, _RetryableError):
        header = error.response.headers.get("retry-after", "")
        if header.isdigit():
            return min(float(header), MAX_RETRY_AFTER)
        return _SERVER_BACKOFF(state)
    # Connection failures: retry quickly; a host that is down stays down, don't stall on it.
    return _CONNECT_BACKOFF(state)


def _unknown_host(error: BaseException) -> bool:
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, socket.gaierror) and cause.errno == socket.EAI_NONAME:
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _worth_retrying(error: BaseException) -> bool:
    """429/5xx and transport errors, except a host name that does not exist."""
    if isinstance(error, _RetryableError):
        return True
    return isinstance(error, httpx.TransportError) and not _unknown_host(error)


def host_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, for messages."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    return f"{parsed.scheme}://{parsed.host}{port}"


class _DeadlinePassed(Exception):
    """The request's own deadline passed (never retried)."""


@dataclass(frozen=True)
class Body:
    """A fully read (capped) response."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    def json(self) -> Any:
        """The body as JSON, or `InvalidRemoteData` naming the URL (also for JSON nested deeper
        than `bot.limits.MAX_NESTING`, refused before parsing)."""
        check_json_nesting(
            self.content, f"{host_of(self.url)} answered JSON that", InvalidRemoteData
        )
        try:
            return json.loads(self.content)
        except (ValueError, RecursionError) as error:
            raise InvalidRemoteData(f"{host_of(self.url)} answered with invalid JSON") from error


@dataclass(frozen=True)
class _Clock:
    """When one request must be done by: its own deadline, or the run's when that is sooner."""

    ends: float
    seconds: float
    stop: threading.Event | None

    def remaining(self) -> float:
        """Seconds left before the sooner deadline; raises `Cancelled` once the run's passed or
        the process is stopping, `_DeadlinePassed` once the request's own passed."""
        check(self.stop)
        run = current_deadline()
        left = self.ends - time.monotonic()
        if run is not None and run.remaining() < left:
            return run.remaining()
        if left <= 0:
            raise _DeadlinePassed
        return left

    def timeout(self, base: httpx.Timeout) -> httpx.Timeout:
        """`base` with every phase shortened to the time left."""
        left = self.remaining()

        def cut(value: float | None) -> float:
            return min(value if value is not None else math.inf, left)

        return httpx.Timeout(
            connect=cut(base.connect),
            read=cut(base.read),
            write=cut(base.write),
            pool=cut(base.pool),
        )

    def sleep(self, seconds: float) -> None:
        """A retry back-off that ends early on shutdown and never outlasts the deadline."""
        wait = min(seconds, max(self.remaining(), 0.0))
        if self.stop is not None:
            self.stop.wait(wait)
        else:
            time.sleep(wait)


class HttpSource:
    """A thin wrapper over one `httpx.Client` with the bot's deadline, retry and size policy."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        attempts: int = 3,
        limit: int = JSON_LIMIT,
        deadline: float = REQUEST_DEADLINE,
        stop: threading.Event | None = None,
    ) -> None:
        """`deadline`: seconds one request may take in all; `stop`: set at shutdown, cancels
        requests in flight at their next body chunk."""
        self.client = client or httpx.Client(
            timeout=DEFAULT_TIMEOUT, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )
        self.attempts = attempts
        self.limit = limit
        self.deadline = deadline
        self.stop = stop
        self.request_count = 0

    def close(self) -> None:
        """Close the underlying connection pool."""
        self.client.close()

    def fetch(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        limit: int | None = None,
        sink: Callable[[bytes], None] | None = None,
        attempts: int | None = None,
    ) -> Body:
        """One request with retries, done within the deadline; the body is read up to `limit`
        bytes (or fed to `sink`)."""
        cap = self.limit if limit is None else limit
        tries = attempts or self.attempts
        clock = _Clock(time.monotonic() + self.deadline, self.deadline, self.stop)

        @retry(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(tries),
            wait=_wait,
            sleep=clock.sleep,
            reraise=True,
        )
        def attempt() -> Body:
            timeout = clock.timeout(self.client.timeout)
            self.request_count += 1
            with self.client.stream(
                method, url, headers=dict(headers or {}), timeout=timeout
            ) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise _RetryableError(response)
                return self._read(response, cap, sink, clock)

        try:
            return attempt()
        except _RetryableError as error:
            raise ServiceUnavailable(
                f"{host_of(url)} answered HTTP {error.response.status_code} "
                f"{tries} times; try again later",
                url=redact(url),
            ) from error
        except (_DeadlinePassed, httpx.TransportError) as error:
            if isinstance(error, _DeadlinePassed) or clock.ends <= time.monotonic():
                raise ServiceUnavailable(
                    f"{host_of(url)} did not finish answering within {self.deadline:.0f}s "
                    "(ROTATION_BOT_REQUEST_TIMEOUT); try again later",
                    url=redact(url),
                ) from None
            check(self.stop)  # a timeout cut short by the run's deadline is that deadline's
            raise ServiceUnavailable(
                f"{host_of(url)} is unreachable ({type(error).__name__}); "
                "check the URL and the network",
                url=redact(url),
            ) from error

    @staticmethod
    def _read(
        response: httpx.Response,
        cap: int,
        sink: Callable[[bytes], None] | None,
        clock: _Clock,
    ) -> Body:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InvalidRemoteData(
                f"{host_of(str(response.url))} sent {declared} bytes, over the {cap}-byte cap"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            clock.remaining()  # shutdown, the run's deadline or the request's: stop here
            size += len(chunk)
            if size > cap:
                raise InvalidRemoteData(
                    f"{host_of(str(response.url))} sent more than the {cap}-byte cap"
                )
            if sink is None:
                chunks.append(chunk)
            else:
                sink(chunk)
        return Body(response.status_code, response.headers, b"".join(chunks), str(response.url))
