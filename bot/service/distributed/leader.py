"""`serve --role scheduler`: several replicas, exactly one active.

The active scheduler holds a PostgreSQL session advisory lock on a connection of its own: the
server releases it when that connection ends (the process died, the machine or the network
went away), and a standby, which tries to take it every `poll` seconds, takes over.  The leader
checks its connection as often; when it is gone the leader stops its APScheduler at once
(another replica may already be active) and becomes a standby again.

A takeover loses no cycle and runs none twice: the cron jobs and their next fire times are in the
shared job table, the new leader fires every slot that came due (coalesced), and the fleet's queue
enqueues each (job, slot) at most once (bot/service/distributed/fleet.py).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable

import psycopg

from bot.service.scheduler import Scheduler

log = logging.getLogger(__name__)

# pg_try_advisory_lock(bigint): "rotation-bot scheduler" as a fixed 63-bit number.
SCHEDULER_LOCK = 0x726F74_7363686564


class LeaderLock:
    """The scheduler's advisory lock, on a connection of its own."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._connection: psycopg.Connection[tuple[object, ...]] | None = None

    @property
    def held(self) -> bool:
        """Whether this process believes it holds the lock (see `still_held`)."""
        return self._connection is not None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it."""
        try:
            connection = psycopg.connect(
                self.conninfo,
                autocommit=True,
                connect_timeout=10,
                application_name="rotation-bot scheduler",
                keepalives=1,
                keepalives_idle=10,
                keepalives_interval=5,
                keepalives_count=3,
            )
        except psycopg.Error as error:
            log.warning(
                "scheduler lock: database unreachable", extra={"error": type(error).__name__}
            )
            return False
        try:
            row = connection.execute(
                "SELECT pg_try_advisory_lock(%s)", (SCHEDULER_LOCK,)
            ).fetchone()
        except psycopg.Error:
            connection.close()
            return False
        if not row or row[0] is not True:
            connection.close()
            return False
        self._connection = connection
        return True

    def still_held(self) -> bool:
        """Whether the lock's connection is still alive (then the server still holds it)."""
        if self._connection is None:
            return False
        try:
            self._connection.execute("SELECT 1")
        except psycopg.Error:
            self.release()
            return False
        return True

    def release(self) -> None:
        """Let go (closing the connection releases the lock)."""
        connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(psycopg.Error):
                connection.close()


class LeaderElection:
    """Runs a scheduler only while this replica holds the lock (in a thread of its own)."""

    def __init__(
        self,
        lock: LeaderLock,
        make_scheduler: Callable[[], Scheduler],
        *,
        poll: float = 5.0,
    ) -> None:
        self.lock = lock
        self.make_scheduler = make_scheduler
        self.poll = poll
        self.leading = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="leader-election", daemon=True)
        self._scheduler: Scheduler | None = None

    def start(self) -> None:
        """Start competing for the lock."""
        self._thread.start()

    def stop(self) -> None:
        """Stop the scheduler (if leading) and give up the lock."""
        self._stop.set()
        self._thread.join(30)
        self._step_down()

    def _run(self) -> None:
        log.info("scheduler standby: waiting for the scheduler lock")
        while not self._stop.is_set():
            if self._scheduler is None:
                if self.lock.try_acquire():
                    self._lead()
            elif not self.lock.still_held():
                log.error("scheduler lock lost (its database connection ended); standing down")
                self._step_down()
            self._stop.wait(self.poll)

    def _lead(self) -> None:
        log.info("scheduler leader: this replica fires the schedule")
        try:
            scheduler = self.make_scheduler()
            scheduler.start()
        except Exception:
            log.exception("scheduler failed to start; giving up the lock")
            self.lock.release()
            return
        self._scheduler = scheduler
        self.leading.set()

    def _step_down(self) -> None:
        scheduler, self._scheduler = self._scheduler, None
        self.leading.clear()
        if scheduler is not None:
            scheduler.pause()
            scheduler.shutdown()
        self.lock.release()
