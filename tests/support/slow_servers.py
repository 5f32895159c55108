"""Hostile-slow HTTP servers on 127.0.0.1, as real sockets (no mocks).

`Dribbler` answers every request with a `Content-Length` body sent one byte per `interval`: the
registry that "sends one byte every 15 s".  `SlowTarballs` is a reverse proxy in front of a real
registry (Verdaccio) that passes everything through and dribbles only tarball bodies, so npm and
the packument reads work at full speed and the bot's own tarball downloads crawl.  Both record
what they did in events, so tests wait for "a download is in flight" instead of sleeping.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "host"}


@dataclass
class Dribbler:
    """A server that sends `length` body bytes, one every `interval` seconds, to every request."""

    length: int
    interval: float
    url: str = ""
    started: threading.Event = field(default_factory=threading.Event)
    closed_early: threading.Event = field(default_factory=threading.Event)
    sent: int = 0
    _listener: socket.socket | None = None
    _stopping: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Dribbler:
        """Listen on a free port and serve in background threads."""
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop accepting and stop every dribble."""
        self._stopping.set()
        if self._listener is not None:
            self._listener.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                connection, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(connection,), daemon=True).start()

    def _serve(self, connection: socket.socket) -> None:
        with connection:
            request = b""
            while b"\r\n\r\n" not in request:
                data = connection.recv(4096)
                if not data:
                    return
                request += data
            head = (
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                f"Content-Length: {self.length}\r\nConnection: close\r\n\r\n"
            )
            try:
                connection.sendall(head.encode())
                self.started.set()
                for _ in range(self.length):
                    if self._stopping.wait(self.interval):
                        return
                    connection.sendall(b" ")
                    self.sent += 1
            except OSError:  # the client hung up before the body was complete
                self.closed_early.set()


@contextmanager
def dribbler(length: int, interval: float) -> Iterator[Dribbler]:
    """A running `Dribbler`, stopped afterwards."""
    server = Dribbler(length, interval).start()
    try:
        yield server
    finally:
        server.stop()


@dataclass
class SlowTarballs:
    """A reverse proxy in front of `upstream` that dribbles tarball bodies (`*.tgz`)."""

    upstream: str
    interval: float
    url: str = ""
    tarball_started: threading.Event = field(default_factory=threading.Event)
    tarballs_finished: int = 0
    _server: ThreadingHTTPServer | None = None

    def start(self) -> SlowTarballs:
        """Listen on a free port; tarball URLs in packuments point back at this proxy."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                proxy._forward(self)

            def do_HEAD(self) -> None:
                proxy._forward(self)

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving (dribbles in progress end at their next byte)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.interval = 0

    def _forward(self, handler: BaseHTTPRequestHandler) -> None:
        headers = {k: v for k, v in handler.headers.items() if k.lower() not in _HOP_BY_HOP}
        headers["Host"] = handler.headers.get("Host", "")  # Verdaccio writes tarball URLs for it
        headers["Accept-Encoding"] = "identity"
        response = httpx.request(
            handler.command, self.upstream.rstrip("/") + handler.path, headers=headers, timeout=30
        )
        body = response.content
        handler.send_response(response.status_code)
        for key, value in response.headers.items():
            if key.lower() not in _HOP_BY_HOP and key.lower() != "content-encoding":
                handler.send_header(key, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.end_headers()
        if handler.command == "HEAD":
            return
        try:
            if not handler.path.endswith(".tgz") or self.interval <= 0:
                handler.wfile.write(body)
                return
            self.tarball_started.set()
            for index in range(len(body)):
                handler.wfile.write(body[index : index + 1])
                handler.wfile.flush()
                time.sleep(self.interval)
            self.tarballs_finished += 1
        except OSError:  # the client went away
            return
