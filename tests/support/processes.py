"""Local test servers as processes: free ports, readiness polling, stopping by process group."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx


def free_port() -> int:
    """A free TCP port on 127.0.0.1."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def stop_process(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, SIGKILL it if it lingers."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


def wait_for_http(
    url: str,
    process: subprocess.Popen[bytes],
    log: Path,
    *,
    timeout: float = 30,
    ok: tuple[int, ...] | None = None,
) -> None:
    """Poll `url` until it answers (with a status in `ok`, when given); on timeout or exit,
    stop the process and raise with the tail of its log."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.get(url, timeout=1)
            if ok is None or response.status_code in ok:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            stop_process(process)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{url} did not start; see {log}: {tail}")
        time.sleep(0.05)
