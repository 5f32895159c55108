"""The `rotation-bot` entry point.

Before anything else is imported (GitPython runs `git version` at import time), the process
environment is read once and handed to the CLI explicitly, and `os.environ` is cut down to the
allowlist: every child process — git through GitPython included — inherits no token, no secret
and nothing else it was not meant to see.
"""

from __future__ import annotations

import os

import bot.config  # noqa: F401 - resolves the default state directory (XDG_*) from the full environment
from bot.shell import allowed_environment


def main() -> None:
    """Run the CLI with the full environment passed explicitly and `os.environ` allowlisted."""
    environ = dict(os.environ)
    os.environ.clear()
    os.environ.update(allowed_environment(environ))
    from bot.cli import main as cli  # noqa: PLC0415 - imported after the environment is clean

    cli(obj=environ)


if __name__ == "__main__":
    main()
