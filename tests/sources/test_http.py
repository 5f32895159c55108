"""The HTTP helper against real slow sockets on 127.0.0.1: an overall deadline per request (not a
per-read timeout), the run's deadline, cancellation at the next chunk, and hostile JSON."""

from __future__ import annotations

import threading

import httpx
import pytest

from bot.cancellation import RunDeadlineExceeded, ShutdownRequested, run_deadline
from bot.errors import InvalidRemoteData, ServiceUnavailable
from bot.sources.http import Body, HttpSource
from tests.support.slow_servers import dribbler


def test_a_server_dribbling_bytes_is_cut_off_at_the_request_deadline() -> None:
    # 40 bytes, one every 0.25 s: every read arrives well within httpx's 20 s read timeout,
    # so only an overall deadline stops it before the 10 s it takes to finish.
    with dribbler(length=40, interval=0.25) as server:
        http = HttpSource(attempts=3, deadline=1.0)
        with pytest.raises(ServiceUnavailable) as error:
            http.fetch("GET", f"{server.url}/sharp")
        assert server.closed_early.wait(10), "the connection was dropped, not read to the end"
    assert str(error.value) == (
        f"{server.url} did not finish answering within 1s (ROTATION_BOT_REQUEST_TIMEOUT); "
        "try again later"
    )
    assert http.request_count == 1  # the deadline covers retries too: none was attempted
    assert server.sent < 40


def test_the_runs_deadline_cuts_a_request_short() -> None:
    with dribbler(length=40, interval=0.25) as server:
        http = HttpSource(deadline=300)
        with run_deadline(1.0), pytest.raises(RunDeadlineExceeded) as error:
            http.fetch("GET", f"{server.url}/sharp")
    assert "the run took longer than its 1s deadline (ROTATION_BOT_RUN_TIMEOUT)" in str(error.value)
    assert server.sent < 40


def test_a_server_that_sends_nothing_ends_at_the_runs_deadline_not_the_read_timeout() -> None:
    with dribbler(length=1, interval=600) as server:  # headers, then silence
        http = HttpSource(deadline=300)  # httpx's own read timeout is 20 s
        with run_deadline(0.5), pytest.raises(RunDeadlineExceeded):
            http.fetch("GET", f"{server.url}/sharp")
        assert server.started.is_set()


def test_shutdown_cancels_a_download_at_its_next_chunk() -> None:
    stop = threading.Event()
    received: list[bytes] = []
    outcome: list[BaseException] = []
    with dribbler(length=10_000, interval=0.05) as server:
        http = HttpSource(stop=stop, deadline=3600)

        def download() -> None:
            try:
                http.fetch("GET", f"{server.url}/sharp.tgz", sink=received.append)
            except BaseException as error:
                outcome.append(error)

        thread = threading.Thread(target=download)
        thread.start()
        assert server.started.wait(10)
        while not received:
            server.started.wait(0.05)
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert server.closed_early.wait(10)
    (error,) = outcome
    assert isinstance(error, ShutdownRequested)
    assert len(received) < 10_000


def test_shutdown_interrupts_a_retry_back_off() -> None:
    stop = threading.Event()
    calls: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        stop.set()  # shutdown begins while the server is failing
        return httpx.Response(503, headers={"Retry-After": "30"})

    http = HttpSource(httpx.Client(transport=httpx.MockTransport(handler)), stop=stop)
    with pytest.raises(ShutdownRequested):
        http.fetch("GET", "http://registry.invalid/sharp")
    assert len(calls) == 1


@pytest.mark.parametrize(
    "content",
    [
        b'{"versions": ' + b"[" * 20_000 + b"]" * 20_000 + b"}",
        b'{"versions": {"0.1.0": ' + b'{"a": ' * 100 + b"1" + b"}" * 100 + b"}}",
    ],
)
def test_json_nested_too_deep_is_refused_before_parsing(content: bytes) -> None:
    body = Body(200, httpx.Headers(), content, "http://127.0.0.1:4873/sharp")
    with pytest.raises(InvalidRemoteData) as error:
        body.json()
    assert str(error.value) == (
        "http://127.0.0.1:4873 answered JSON that nests deeper than 64 levels of arrays and objects; "
        "rotation-bot refuses it (no real manifest or config is that deep)"
    )


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '{"description": "' + "[{" * 1000 + '\\"]"}'
    body = Body(200, httpx.Headers(), text.encode(), "http://127.0.0.1:4873/sharp")
    assert body.json() == {"description": "[{" * 1000 + '"]'}
