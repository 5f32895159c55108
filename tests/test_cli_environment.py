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
    for tool in ("git", "npm"):
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
