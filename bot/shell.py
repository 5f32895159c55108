"""Subprocesses with argv lists only, an allowlisted environment, timeouts and redacted logs."""

from __future__ import annotations

import logging
import os
import shlex
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from bot.errors import CommandFailed, ServiceUnavailable, redact

log = logging.getLogger(__name__)

# Variables a child may inherit from the bot's own environment; everything else is dropped,
# so forge tokens and webhook secrets never reach npm or git.
ALLOWED_ENVIRONMENT = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "TZ",
    "TMPDIR",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "REQUESTS_CA_BUNDLE",
    "CURL_CA_BUNDLE",
    "GIT_SSL_CAINFO",
    "SSH_AUTH_SOCK",
    "GIT_SSH_COMMAND",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
OUTPUT_LIMIT = 20_000


@dataclass(frozen=True)
class CommandResult:
    """A finished subprocess: argv, exit code, and (redacted, truncated) output."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    seconds: float


def allowed_environment(
    source: Mapping[str, str], extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The allowlisted subset of `source`, plus `extra` (which wins)."""
    env = {name: source[name] for name in ALLOWED_ENVIRONMENT if name in source}
    env.update(extra or {})
    return env


def _tail(text: str) -> str:
    return redact(text[-OUTPUT_LIMIT:])


def run(
    argv: Sequence[str],
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: float = 600,
) -> CommandResult:
    """Run `argv` (never through a shell); raise `CommandFailed` on a non-zero exit."""
    printable = redact(shlex.join(argv))
    log.info("command", extra={"argv": printable, "cwd": str(cwd)})
    started = time.monotonic()
    try:
        completed = subprocess.run(
            list(argv),
            cwd=cwd,
            env=dict(env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError as error:
        raise ServiceUnavailable(
            f"{argv[0]} is not installed or not on PATH; install it and retry",
            command=printable,
        ) from error
    except subprocess.TimeoutExpired as error:
        raise CommandFailed(
            f"`{printable}` did not finish within {timeout:.0f}s in {cwd}", command=printable
        ) from error
    result = CommandResult(
        argv=tuple(argv),
        returncode=completed.returncode,
        stdout=_tail(completed.stdout),
        stderr=_tail(completed.stderr),
        seconds=round(time.monotonic() - started, 3),
    )
    if completed.returncode != 0:
        last_line = next(
            (line for line in reversed(result.stderr.splitlines()) if line.strip()), ""
        )
        raise CommandFailed(
            f"`{printable}` exited {completed.returncode} in {cwd}: {last_line}",
            command=printable,
            returncode=completed.returncode,
            stderr=result.stderr[-4000:],
            stdout=result.stdout[-4000:],
        )
    return result


def process_environment() -> dict[str, str]:
    """The bot's own environment, read once at the edge and passed down explicitly."""
    return dict(os.environ)
