"""Which process owns a run, and whether that process is gone.

A run's `run-started` record names its process: host name, kernel boot id, pid and the pid's
start time (Linux `/proc`).  A later start on the same host closes the runs whose process is gone
— a different boot, no such pid, a pid reused by another process (other start time), or a
zombie.  Runs owned by another host are left to that host.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

_PROC = Path("/proc")


@dataclass(frozen=True)
class ProcessIdentity:
    """A process, told apart from a later one that reuses its pid."""

    host: str
    boot_id: str | None
    pid: int
    start_time: int | None  # clock ticks after boot (/proc/PID/stat field 22)

    def as_evidence(self) -> dict[str, Any]:
        """As recorded in `run-started`."""
        return asdict(self)

    @classmethod
    def from_evidence(cls, value: object) -> ProcessIdentity | None:
        """The identity a `run-started` record names (None when it names none)."""
        if not isinstance(value, Mapping):
            return None
        host, pid = value.get("host"), value.get("pid")
        if not isinstance(host, str) or not isinstance(pid, int) or isinstance(pid, bool):
            return None
        boot_id, start_time = value.get("boot_id"), value.get("start_time")
        return cls(
            host=host,
            boot_id=boot_id if isinstance(boot_id, str) else None,
            pid=pid,
            start_time=start_time if isinstance(start_time, int) else None,
        )


def _boot_id() -> str | None:
    try:
        return (_PROC / "sys/kernel/random/boot_id").read_text(encoding="ascii").strip() or None
    except OSError:
        return None


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time) of `pid` from /proc, or None when there is no such process."""
    try:
        text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # after "pid (comm) "
    return fields[0], int(fields[19])


def current_process() -> ProcessIdentity:
    """This process."""
    pid = os.getpid()
    stat = _stat(pid)
    return ProcessIdentity(
        host=socket.gethostname(),
        boot_id=_boot_id(),
        pid=pid,
        start_time=stat[1] if stat else None,
    )


def is_gone(owner: ProcessIdentity, here: ProcessIdentity) -> bool:
    """Whether `owner` has certainly ended, judged from `here` (False for another host's)."""
    if owner.host != here.host:
        return False
    if owner.boot_id and here.boot_id and owner.boot_id != here.boot_id:
        return True
    if _PROC.joinpath("self").exists():
        stat = _stat(owner.pid)
        if stat is None or stat[0] in ("Z", "X"):
            return True
        return owner.start_time is not None and stat[1] != owner.start_time
    try:  # no /proc: the pid alone
        os.kill(owner.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
