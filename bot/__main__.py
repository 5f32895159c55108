"""The `rotation-bot` entry point.

The process environment is read once and handed to the CLI explicitly; no secret may stay where
a child process (or anything reading `/proc/<pid>/environ`) could find it.  Clearing `os.environ`
is not enough: `/proc/<pid>/environ` shows the environment the process was started with.  So
when the environment holds anything beyond the allowlist, the entry point re-executes itself
with only the allowlisted variables and passes the full environment through an anonymous memory
file (`memfd`) that the new process reads and closes before anything else runs.  Then
`os.environ` is the allowlist too: every child — git through GitPython included — inherits no
token, no secret and nothing else it was not meant to see.
"""

from __future__ import annotations

import json
import os
import sys

from bot.shell import allowed_environment

_HANDOFF = "ROTATION_BOT_ENVIRONMENT_FD"


def _received() -> dict[str, str] | None:
    """The environment the previous image of this process handed over, if any."""
    descriptor = os.environ.pop(_HANDOFF, None)
    if descriptor is None:
        return None
    with os.fdopen(int(descriptor), "rb") as handle:
        data: dict[str, str] = json.loads(handle.read())
    return data


def _reexecute(environ: dict[str, str]) -> None:
    """Replace this process with itself, started with the allowlisted environment only."""
    descriptor = os.memfd_create("rotation-bot-environment", os.MFD_CLOEXEC)
    os.write(descriptor, json.dumps(environ).encode())
    os.lseek(descriptor, 0, os.SEEK_SET)
    os.set_inheritable(descriptor, True)
    clean = {**allowed_environment(environ), _HANDOFF: str(descriptor)}
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], clean)  # noqa: S606 - argv list


def main() -> None:
    """Run the CLI with the full environment passed explicitly and the process environment
    (as the kernel shows it, too) reduced to the allowlist."""
    environ = _received()
    if environ is None:
        environ = dict(os.environ)
        if environ != allowed_environment(environ) and hasattr(os, "memfd_create"):
            _reexecute(environ)
    os.environ.update(environ)  # in-process only: the kernel's copy stays the allowlist
    import bot.config  # noqa: F401, PLC0415 - default state directory from XDG_* of the full environment

    os.environ.clear()
    os.environ.update(allowed_environment(environ))
    from bot.cli import main as cli  # noqa: PLC0415 - imported after the environment is clean

    cli(obj=environ)


if __name__ == "__main__":
    main()
