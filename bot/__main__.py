"""The `rotation-bot` entry point.

Secret `ROTATION_BOT_*` variables are taken out of the process environment before anything
else is imported (GitPython runs `git version` at import time), and handed to the CLI directly,
so no child process ever inherits them.
"""

from __future__ import annotations

import os

from bot.config import secret_variables


def main() -> None:
    """Run the CLI with the secrets moved out of `os.environ`."""
    secrets = {name: os.environ.pop(name) for name in secret_variables(os.environ)}
    from bot.cli import main as cli  # noqa: PLC0415 - imported after the environment is clean

    cli(obj=secrets)


if __name__ == "__main__":
    main()
