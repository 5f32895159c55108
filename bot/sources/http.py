"""The one HTTP helper every source uses: timeouts, bounded retries, size caps, clear errors.

Retries (tenacity) cover connection errors, 429 and 5xx, honouring `Retry-After` up to a cap;
anything else is returned to the caller.  Bodies are streamed and refused past a size cap, so a
hostile or broken server cannot exhaust memory.  Every failure becomes a `ServiceUnavailable`
that names the host.
"""

from __future__ import annotations

import json
import logging
import socket
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

from bot.errors import InvalidRemoteData, ServiceUnavailable, redact

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT = httpx.Timeout(20.0, connect=5.0)
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


@dataclass(frozen=True)
class Body:
    """A fully read (capped) response."""

    status_code: int
    headers: httpx.Headers
    content: bytes
    url: str

    def json(self) -> Any:
        """The body as JSON, or `InvalidRemoteData` naming the URL."""
        try:
            return json.loads(self.content)
        except ValueError as error:
            raise InvalidRemoteData(f"{host_of(self.url)} answered with invalid JSON") from error


class HttpSource:
    """A thin wrapper over one `httpx.Client` with the bot's retry and size policy."""

    def __init__(
        self,
        client: httpx.Client | None = None,
        *,
        attempts: int = 3,
        limit: int = JSON_LIMIT,
    ) -> None:
        self.client = client or httpx.Client(
            timeout=DEFAULT_TIMEOUT, headers={"User-Agent": USER_AGENT}, follow_redirects=False
        )
        self.attempts = attempts
        self.limit = limit
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
        """One request with retries; the body is read up to `limit` bytes (or fed to `sink`)."""
        cap = self.limit if limit is None else limit
        tries = attempts or self.attempts

        @retry(
            retry=retry_if_exception(_worth_retrying),
            stop=stop_after_attempt(tries),
            wait=_wait,
            reraise=True,
        )
        def attempt() -> Body:
            self.request_count += 1
            with self.client.stream(method, url, headers=dict(headers or {})) as response:
                if response.status_code == 429 or response.status_code >= 500:
                    raise _RetryableError(response)
                return self._read(response, cap, sink)

        try:
            return attempt()
        except _RetryableError as error:
            raise ServiceUnavailable(
                f"{host_of(url)} answered HTTP {error.response.status_code} "
                f"{tries} times; try again later",
                url=redact(url),
            ) from error
        except httpx.TransportError as error:
            raise ServiceUnavailable(
                f"{host_of(url)} is unreachable ({type(error).__name__}); "
                "check the URL and the network",
                url=redact(url),
            ) from error

    @staticmethod
    def _read(response: httpx.Response, cap: int, sink: Callable[[bytes], None] | None) -> Body:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise InvalidRemoteData(
                f"{host_of(str(response.url))} sent {declared} bytes, over the {cap}-byte cap"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
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
