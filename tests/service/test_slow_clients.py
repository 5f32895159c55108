"""Slow clients cannot starve the HTTP server: 120 real sockets dribbling a request one byte at a
time (slowloris) neither block `/healthz` nor stay connected past the request read timeout."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from bot.audit import AuditStore
from bot.config import Settings
from bot.service.app import RunningService, ServiceOptions, start_service
from tests.support.service import RecordingPipeline, RecordingRunner, wait_until

SLOW_CLIENTS = 120


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    settings = Settings(
        listen="127.0.0.1:0",
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        webhook_secret="secret",
    )
    running = start_service(
        settings,
        RecordingPipeline(RecordingRunner(), AuditStore(settings.resolved_database_url)),
        repositories=lambda: (),
        options=ServiceOptions(shutdown_grace=2, request_read_timeout=4, cleanup_interval=1),
    )
    try:
        yield running
    finally:
        running.stop()


class Slowloris:
    """`count` connections, each sending a never-ending request header one byte per second."""

    def __init__(self, url: str, count: int) -> None:
        host, port = url.removeprefix("http://").rsplit(":", 1)
        self.sockets = [
            socket.create_connection((host, int(port)), timeout=5) for _ in range(count)
        ]
        self.closed_by_server: set[int] = set()
        self.stopping = threading.Event()
        for sock in self.sockets:
            sock.sendall(b"POST /webhook HTTP/1.1\r\nHost: bot\r\nX-Slow: ")
        self.thread = threading.Thread(target=self._dribble, daemon=True)
        self.thread.start()

    def _dribble(self) -> None:
        while not self.stopping.wait(1.0):
            for index, sock in enumerate(self.sockets):
                if index in self.closed_by_server:
                    continue
                try:
                    sock.sendall(b"a")
                except OSError:
                    self.closed_by_server.add(index)

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        for sock in self.sockets:
            sock.close()


def test_slow_clients_neither_block_healthz_nor_stay_connected(service: RunningService) -> None:
    slow = Slowloris(service.url, SLOW_CLIENTS)
    try:
        # Every slow client is connected and mid-request; the server still answers at once.
        response = httpx.get(f"{service.url}/healthz", timeout=10)
        assert response.status_code == 200
        assert response.json() == {"status": "ok"}
        assert slow.closed_by_server == set()
        # Nobody finishes a request in 4 s by sending one byte a second: all are dropped.
        wait_until(
            lambda: len(slow.closed_by_server) == SLOW_CLIENTS,
            timeout=60,
            message="the server to drop every slow client",
        )
        assert httpx.get(f"{service.url}/healthz", timeout=10).status_code == 200
    finally:
        slow.close()
