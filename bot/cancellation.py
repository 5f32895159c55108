"""Stopping a run early: shutdown (SIGTERM, SIGINT) or the run's own deadline.

`Cancelled` derives from `BaseException`, as `asyncio.CancelledError` and `KeyboardInterrupt` do,
so no `except Exception` on the way swallows it: every context manager it passes (the worktree,
the scratch directory with the npm userconfig) cleans up, and the pipeline records the run
`interrupted`.  Long waits — HTTP bodies arriving chunk by chunk, retry back-offs — call
`check(stop)` so that they end at the next chunk, not when the server is done.

The deadline of the current run lives in a context variable set by `run_deadline` around each
run (the CLI's `run`, the service's queue worker).  Threads started inside a run do not inherit
context variables unless started through `contextvars.copy_context().run`; they still see the
process's stop event and each request's own deadline.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass


class Cancelled(BaseException):
    """The run must stop now; `reason` says why, in one line."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ShutdownRequested(Cancelled):
    """The process is shutting down (a signal); the run is interrupted, to be retried later."""


class SignalReceived(ShutdownRequested):
    """SIGTERM or SIGINT arrived during a command-line run."""

    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(
            f"{signal.Signals(signum).name} received: the run was stopped and recorded "
            "interrupted, its worktree removed; nothing was published"
        )


class RunDeadlineExceeded(Cancelled):
    """The run took longer than its deadline (`ROTATION_BOT_RUN_TIMEOUT`)."""


@dataclass(frozen=True)
class Deadline:
    """A point in `time.monotonic()` time and the setting that put it there."""

    at: float
    seconds: float
    setting: str

    def remaining(self) -> float:
        """Seconds left (negative once passed)."""
        return self.at - time.monotonic()


_current: ContextVar[Deadline | None] = ContextVar("rotation_bot_run_deadline", default=None)


@contextmanager
def run_deadline(seconds: float, *, setting: str = "ROTATION_BOT_RUN_TIMEOUT") -> Iterator[None]:
    """Give the run executed inside the block `seconds` in all."""
    token = _current.set(Deadline(time.monotonic() + seconds, seconds, setting))
    try:
        yield
    finally:
        _current.reset(token)


def current_deadline() -> Deadline | None:
    """The deadline of the run this code executes for, if any."""
    return _current.get()


SHUTDOWN_REASON = "the bot is shutting down (SIGTERM or SIGINT); nothing was published"


def check(stop: threading.Event | None) -> None:
    """Raise `ShutdownRequested` when `stop` is set, `RunDeadlineExceeded` when the current run's
    deadline has passed; otherwise return at once."""
    if stop is not None and stop.is_set():
        raise ShutdownRequested(SHUTDOWN_REASON)
    deadline = _current.get()
    if deadline is not None and deadline.remaining() <= 0:
        raise RunDeadlineExceeded(
            f"the run took longer than its {deadline.seconds:g}s deadline ({deadline.setting}); "
            "stopped, nothing was published"
        )
