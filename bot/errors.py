"""One error tree for the whole bot: each error has a slug, an exit code and a one-line message.

Everything below the pipeline raises a `BotError`: `Pipeline` records it as the outcome of the
run it ended (one `RunRecorder` per run), and `cli.py` turns anything that reaches it into a
one-line message and an exit code.  Messages name the file or host involved and say what to
do.  Secrets registered with `register_secret` are masked in every message, log line and audit
record that passes through `redact`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any, ClassVar

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

_secrets: set[str] = set()
_secrets_lock = threading.Lock()
_TOKEN_IN_URL = re.compile(r"(?<=://)[^/@\s:]+:[^/@\s]+(?=@)")


def register_secret(value: str | None) -> None:
    """Remember a secret so that `redact` masks it wherever it appears."""
    if value and len(value) >= 4:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Mask every registered secret and any `user:password@` in URLs."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, "***")
    return _TOKEN_IN_URL.sub("***", text)


def redact_data(value: Any) -> Any:
    """`redact` applied to every string inside JSON-like data."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, Mapping):
        return {str(key): redact_data(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_data(item) for item in value]
    return value


class BotError(Exception):
    """Base of every error the bot raises on purpose."""

    slug: ClassVar[str] = "error"
    exit_code: ClassVar[int] = EXIT_FAILED

    def __init__(self, message: str, **fields: Any) -> None:
        self.message = redact(message)
        self.fields: dict[str, Any] = redact_data(fields)
        super().__init__(self.message)

    def as_evidence(self) -> dict[str, Any]:
        """The error as structured audit evidence."""
        return {"error": self.slug, "message": self.message, **self.fields}


class UsageError(BotError):
    """The command line or an argument is wrong."""

    slug = "usage"
    exit_code = EXIT_USAGE


class ConfigError(UsageError):
    """A configuration file or setting is invalid."""

    slug = "config"


class ManifestError(UsageError):
    """A file in the target repository (package.json, lockfile, Dockerfile…) is unusable."""

    slug = "manifest"


class RepositoryError(UsageError):
    """The target repository cannot be used (not a git repository, unknown ref…)."""

    slug = "repository"


class StepFailed(BotError):
    """A runbook step did not achieve what it must; nothing is published."""

    slug = "step-failed"


class VerificationFailed(StepFailed):
    """A verification step found something wrong (integrity, signature, provenance)."""

    slug = "verification-failed"


class InvalidRemoteData(StepFailed):
    """A registry answered with data that fails validation (bad version, bad digest)."""

    slug = "invalid-remote-data"


class CommandFailed(StepFailed):
    """A subprocess (npm, git) exited non-zero."""

    slug = "command-failed"


class ServiceUnavailable(BotError):
    """An external service (registry, forge) cannot be reached or keeps failing."""

    slug = "unavailable"
    exit_code = EXIT_UNAVAILABLE
