"""Run a command as a child subreaper and stop what its killed descendants leave running.

    python tests/bench/subreaper.py COMMAND [ARG...]

mutmut ends a mutant's test process that runs too long with SIGXCPU, so that process's fixture
teardown never runs and a registry it started (in a session of its own, out of reach of a
process-group kill) is left running.  Under this wrapper (Linux `PR_SET_CHILD_SUBREAPER`) every
process orphaned below the command is handed to us instead of to init: every 2 s we stop those
(an orphan's test is gone), and when the command exits, everything still left below us.  What was
stopped is reported on stderr; the command's exit status is ours.  (tests/bench/mutation.sh)
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable

PR_SET_CHILD_SUBREAPER = 36


def tree() -> dict[int, int]:
    """{pid: parent pid} of every process."""
    parents = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    parents[int(entry)] = int(stat.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass  # gone meanwhile
    return parents


def below(roots: Iterable[int], parents: dict[int, int]) -> set[int]:
    """`roots` and all their descendants."""
    found: set[int] = set()
    todo = list(roots)
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo += [child for child, parent in parents.items() if parent == pid]
    return found


def orphans(command: int | None) -> set[int]:
    """Our children other than `command`, and their descendants: what was orphaned below us."""
    parents = tree()
    me = os.getpid()
    return below((p for p, parent in parents.items() if parent == me and p != command), parents)


def reap(pids: Iterable[int]) -> None:
    """Collect the exit status of those of `pids` that ended (orphans are our children now)."""
    for pid in pids:
        # not our child (a descendant of one), or collected already: nothing to collect
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def stop(pids: set[int]) -> None:
    """SIGTERM, then SIGKILL after 5 s, to `pids`."""
    for number in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, number)
        deadline = time.monotonic() + 5
        while pids and time.monotonic() < deadline:
            reap(pids)
            pids = pids & set(tree())
            time.sleep(0.1)
    if pids:
        print(f"subreaper: could not stop {sorted(pids)}", file=sys.stderr)


def main(command: list[str]) -> int:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        sys.exit(f"subreaper: cannot become a child subreaper: {os.strerror(ctypes.get_errno())}")
    run = subprocess.Popen(command)
    for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda received, _frame: run.send_signal(received))
    stopped = 0
    while True:
        try:
            code = run.wait(timeout=2)
            break
        except subprocess.TimeoutExpired:
            left = orphans(run.pid)
            stopped += len(left)
            stop(left)
    left = orphans(None)
    stopped += len(left)
    stop(left)
    if stopped:
        print(f"subreaper: stopped {stopped} processes the killed tests left", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
