"""The external anchor: after every finished run, the chain head (record number and hash) is
written where the audit database's writer cannot rewrite it, so that `audit verify --anchor`
can tell a rebuilt or truncated chain from the real one.

Each head goes to three places: a file opened `O_APPEND` (make it append-only with
`chattr +a`, or ship it off the host — see docs/AUDIT.md), the log (a structured line at INFO,
`event=audit-anchor`), and optionally syslog (a local socket or a remote `udp://` / `tcp://`
collector).  `read_anchors` reads any of them back: the anchor file, a text or JSON log, or a
syslog file; lines that are not anchors are ignored.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import os
import re
import socket
import sys
from dataclasses import dataclass
from pathlib import Path

from bot.audit.chain import AnchoredHead, canonical
from bot.errors import ConfigError

EVENT = "audit-anchor"
log = logging.getLogger(__name__)
log.setLevel(logging.INFO)  # the anchor line is always logged, whatever the root level

_HASH = re.compile(r"^[0-9a-f]{64}$")
_TEXT_SEQ = re.compile(r"\bseq=(\d+)\b")
_TEXT_HASH = re.compile(r"\bhash=([0-9a-f]{64})\b")
_SYSLOG_URL = re.compile(r"^(udp|tcp)://([^/:]+|\[[0-9a-fA-F:]+\]):(\d{1,5})$")


@dataclass(frozen=True)
class AnchorReading:
    """The heads one anchor source holds, and its lines that look like anchors but are not."""

    heads: tuple[AnchoredHead, ...]
    problems: tuple[str, ...]


class _RaisingSysLogHandler(logging.handlers.SysLogHandler):
    """A SysLogHandler that lets a send failure reach the caller instead of printing it."""

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        error = sys.exc_info()[1]
        if error is not None:
            raise error


SyslogAddress = tuple[str | tuple[str, int], socket.SocketKind | None]


def parse_syslog_address(value: str) -> SyslogAddress:
    """`/dev/log` (a local socket), `udp://HOST:PORT` or `tcp://HOST:PORT` → (address, socket
    type) for `SysLogHandler`; anything else is a `ConfigError` naming the setting."""
    match = _SYSLOG_URL.match(value)
    if match:
        kind = socket.SOCK_DGRAM if match.group(1) == "udp" else socket.SOCK_STREAM
        return (match.group(2).strip("[]"), int(match.group(3))), kind
    if value.startswith("/"):
        return value, None
    raise ConfigError(
        f"ROTATION_BOT_AUDIT_SYSLOG={value!r} must be a socket path (/dev/log), "
        "udp://HOST:PORT or tcp://HOST:PORT"
    )


class Anchor:
    """Appends chain heads to the anchor file, the log and (optionally) syslog."""

    def __init__(self, path: Path, *, syslog: str | None = None) -> None:
        self.path = path
        self._syslog_address = parse_syslog_address(syslog) if syslog else None
        self._syslog: logging.Handler | None = None

    def _open(self) -> int:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        return os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)

    def check_writable(self) -> None:
        """Raise a `ConfigError` unless the anchor file can be appended to right now."""
        try:
            os.close(self._open())
        except OSError as error:
            raise ConfigError(
                f"audit anchor {self.path} cannot be appended to ({error.strerror}); nothing is "
                "published until it can: fix it or set ROTATION_BOT_AUDIT_ANCHOR"
            ) from error

    def append(self, seq: int, digest: str, run_id: str, time: str) -> None:
        """Write one head everywhere; a failure is logged as an error (the next head, which
        covers this one, may still get through) and never raised."""
        line = canonical(
            {"event": EVENT, "seq": seq, "hash": digest, "run_id": run_id, "time": time}
        )
        log.info(
            "audit chain head anchored",
            extra={"event": EVENT, "seq": seq, "hash": digest, "run_id": run_id},
        )
        try:
            descriptor = self._open()
            try:
                os.write(descriptor, (line + "\n").encode("utf-8"))
                os.fsync(descriptor)
            finally:
                os.close(descriptor)
        except OSError as error:
            log.error(
                "audit anchor not written",
                extra={"path": str(self.path), "error": error.strerror, "seq": seq},
            )
        if self._syslog_address is not None:
            address, kind = self._syslog_address
            try:
                if self._syslog is None:
                    self._syslog = _RaisingSysLogHandler(address, socktype=kind)
                    self._syslog.ident = "rotation-bot: "
                self._syslog.emit(
                    logging.LogRecord("rotation-bot", logging.INFO, "", 0, line, None, None)
                )
            except OSError as error:
                self._syslog = None  # reconnect next time
                log.error(
                    "audit anchor not sent to syslog",
                    extra={"address": str(address), "error": str(error), "seq": seq},
                )


def _parse(line: str) -> tuple[int, str] | None:
    """(seq, hash) from an anchor line in any of the formats written, or None."""
    start = line.find("{")
    if start >= 0:
        try:
            data = json.loads(line[start:].rstrip("\x00 \t\r"))  # syslog may append a NUL
        except ValueError:
            data = None
        if isinstance(data, dict) and data.get("event") == EVENT:
            seq, digest = data.get("seq"), data.get("hash")
            if isinstance(seq, int) and seq > 0 and isinstance(digest, str) and _HASH.match(digest):
                return seq, digest
            return None
    seq_match, hash_match = _TEXT_SEQ.search(line), _TEXT_HASH.search(line)
    if f"event={EVENT}" in line and seq_match and hash_match and int(seq_match.group(1)) > 0:
        return int(seq_match.group(1)), hash_match.group(1)
    return None


def read_anchors(path: Path) -> AnchorReading:
    """Every anchored head in `path` (an anchor file, a log or a syslog file)."""
    try:
        text = path.read_bytes().decode("utf-8", errors="replace")
    except OSError as error:
        raise ConfigError(
            f"audit anchor {path}: cannot read ({error.strerror}); pass the file the service "
            "appends to (ROTATION_BOT_AUDIT_ANCHOR) or a copy of its log"
        ) from error
    heads, problems = [], []
    for number, line in enumerate(text.splitlines(), start=1):
        if EVENT not in line:
            continue
        parsed = _parse(line)
        if parsed is None:
            problems.append(f"anchor {path}:{number}: not a valid {EVENT} line")
        else:
            heads.append(AnchoredHead(parsed[0], parsed[1], f"{path}:{number}"))
    return AnchorReading(tuple(heads), tuple(problems))
