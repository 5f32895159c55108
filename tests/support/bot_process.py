"""The real `rotation-bot` command as a separate process (`python -m bot …`), for what only a
process can show: signals, a killed run, what is left on disk afterwards."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tests.support.service import wait_until

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class BotProcess:
    """A running `rotation-bot`; its stdout and stderr go to files next to each other."""

    process: subprocess.Popen[bytes]
    stdout: Path
    stderr: Path

    def output(self) -> str:
        """What it printed on stderr so far."""
        return self.stderr.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 60) -> None:
        """Wait until `text` appears on stderr (fails early if the process exits first)."""

        def seen() -> bool:
            if self.process.poll() is not None and text not in self.output():
                raise AssertionError(f"exited {self.process.returncode}: {self.output()}")
            return text in self.output()

        wait_until(seen, timeout=timeout, message=repr(text))

    def signal(self, signum: int) -> None:
        """Send `signum` to the process itself (not its group: npm children are its business)."""
        self.process.send_signal(signum)

    def finish(self, timeout: float = 90) -> int:
        """Wait for the exit code; kill the process group if it does not exit in time."""
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
            raise AssertionError(f"still running after {timeout}s: {self.output()}") from None


def start_bot(directory: Path, environ: Mapping[str, str], *args: str) -> BotProcess:
    """Start `rotation-bot ARGS` with exactly `environ` (plus PYTHONPATH for this checkout)."""
    directory.mkdir(parents=True, exist_ok=True)
    stdout, stderr = directory / "stdout", directory / "stderr"
    with stdout.open("wb") as out, stderr.open("wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", *args],
            cwd=ROOT,
            env={**environ, "PYTHONPATH": str(ROOT)},
            stdout=out,
            stderr=err,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    return BotProcess(process, stdout, stderr)
