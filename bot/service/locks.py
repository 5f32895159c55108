"""One rotation per repository at a time, across threads and processes (service, cron, CLI).

A repository's lock is an OS file lock (`flock`, through `filelock`) on
`<state_dir>/locks/<sha256 of the repository>.lock`: it excludes other threads of this process
and other processes on the machine (a `rotation-bot run` next to `rotation-bot serve`), is
released by the kernel when a process dies, and is re-entrant within one thread, so the service
and the pipeline may both hold it around the same run.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock, Timeout

from bot.errors import ConfigError, ServiceUnavailable

_POLL_SECONDS = 0.05
_WAIT_SLICE_SECONDS = 0.5
_OWNER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")


def repository_key(repo: str) -> str:
    """The identity of a repository for locking and de-duplication: a local checkout by its
    resolved path, `owner/name` ignoring case (as GitHub does), a git URL as written."""
    repo = repo.strip()
    if Path(repo).exists():
        return str(Path(repo).resolve())
    return repo.lower() if _OWNER_NAME.match(repo) else repo


class RepositoryBusy(ServiceUnavailable):
    """Another rotation of the same repository is running; try again when it has finished."""

    slug = "busy"


class RepositoryLocks:
    """Per-repository lock files in one directory (normally `<state_dir>/locks`)."""

    def __init__(self, directory: Path) -> None:
        try:
            directory.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ConfigError(
                f"{directory}: cannot create the lock directory ({error.strerror}); "
                "check ROTATION_BOT_STATE_DIR"
            ) from error
        self.directory = directory

    def path(self, repo: str) -> Path:
        """The lock file of `repo`."""
        key = repository_key(repo).encode("utf-8")
        return self.directory / f"{hashlib.sha256(key).hexdigest()[:32]}.lock"

    def _lock(self, repo: str) -> FileLock:
        # One instance per path, with a per-thread context: re-entrant in a thread, exclusive
        # between threads (each thread opens its own descriptor) and between processes.
        return FileLock(self.path(repo), is_singleton=True, poll_interval=_POLL_SECONDS)

    @contextmanager
    def hold(
        self, repo: str, *, timeout: float = 0.0, stop: threading.Event | None = None
    ) -> Iterator[None]:
        """Hold `repo`'s lock for the block; wait up to `timeout` seconds (`-1`: until free or
        until `stop` is set), else raise `RepositoryBusy`."""
        lock = self._lock(repo)
        waited = 0.0
        while True:
            slice_seconds = (
                _WAIT_SLICE_SECONDS
                if timeout < 0
                else min(_WAIT_SLICE_SECONDS, max(timeout - waited, 0.0))
            )
            try:
                lock.acquire(timeout=slice_seconds)
                break
            except Timeout:
                waited += slice_seconds
                if (timeout >= 0 and waited >= timeout) or (stop is not None and stop.is_set()):
                    raise RepositoryBusy(
                        f"another rotation of {repo} is running (lock {self.path(repo)}); "
                        "try again when it has finished",
                        repo=repo,
                    ) from None
        try:
            yield
        finally:
            lock.release()

    def is_busy(self, repo: str) -> bool:
        """Whether another thread or process holds `repo`'s lock right now (a snapshot)."""
        try:
            with self.hold(repo, timeout=0.0):
                return False
        except RepositoryBusy:
            return True
