"""Secrets given in the environment never reach a child process: git and npm see neither the
bot's secrets nor anything else outside the allowlist, observed through real wrappers on PATH."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

from tests.conftest import Env, make_project
from tests.support.processes import free_port, stop_process, wait_for_http

CANARY = "canary-secret-5f0c1e7a9b"


def spy(directory: Path, tool: str, dump: Path) -> None:
    real = shutil.which(tool)
    assert real is not None
    script = directory / tool
    script.write_text(f'#!/bin/sh\nenv >> "{dump}"\nexec "{real}" "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_git_and_npm_never_inherit_secrets(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    bin_dir = tmp_path / "spy-bin"
    bin_dir.mkdir()
    dump = tmp_path / "child-environments.txt"
    for tool in ("git", "node"):  # the bot runs npm as `node <npm>/bin/npm-cli.js`
        spy(bin_dir, tool, dump)
    variables = {
        **env.variables(),
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "ROTATION_BOT_WEBHOOK_SECRET": CANARY,
        "ROTATION_BOT_DATABASE_URL": f"sqlite:///{tmp_path / 'audit-' / CANARY}.sqlite3",
        "AWS_SECRET_ACCESS_KEY": CANARY,
    }

    result = subprocess.run(
        [sys.executable, "-m", "bot", "run", "--repo", str(path), "--runbook", "sharp"],
        env=variables,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    seen = dump.read_text()
    assert "GIT_" in seen and "NPM_CONFIG_USERCONFIG" in seen  # both tools really ran
    assert CANARY not in seen
    assert CANARY not in result.stdout + result.stderr


def test_the_running_bot_holds_no_secret_in_its_kernel_environment(tmp_path: Path) -> None:
    """`/proc/<pid>/environ` shows what a process was started with; clearing `os.environ` does
    not change it.  The entry point re-executes itself with the allowlist only."""
    port = free_port()
    variables = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "ROTATION_BOT_STATE_DIR": str(tmp_path / "state"),
        "ROTATION_BOT_LISTEN": f"127.0.0.1:{port}",
        "ROTATION_BOT_REPOSITORIES": "octo/app",
        "ROTATION_BOT_WEBHOOK_SECRET": CANARY,
        "AWS_SECRET_ACCESS_KEY": CANARY,
    }
    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bot", "serve"],
            env=variables,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/healthz", process, log, timeout=60)
        environ = Path(f"/proc/{process.pid}/environ").read_bytes()
        memory_file = [
            link
            for fd in Path(f"/proc/{process.pid}/fd").iterdir()
            if "rotation-bot-environment" in (link := os.readlink(fd))
        ]
    finally:
        stop_process(process)
    assert CANARY.encode() not in environ
    assert b"PATH=" in environ and b"HOME=" in environ
    assert memory_file == [], "the hand-over file must be closed once read"
