"""Logs are a fixed message plus structured fields, as text or JSON lines, always redacted."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import Env, bot, make_project


def test_json_logs_carry_structured_fields_and_no_secrets(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    env.extra["ROTATION_BOT_LOG_FORMAT"] = "json"

    result = bot(env, "-v", "run", "--repo", str(path), "--runbook", "sharp")

    assert result.exit_code == 0, result.output
    entries = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    npm = next(entry for entry in entries if "npm-cli.js install" in entry.get("argv", ""))
    assert (npm["level"], npm["logger"], npm["message"]) == ("INFO", "bot.shell", "command")
    assert npm["cwd"].endswith("projects/_root"), "npm runs in a scratch copy, not the worktree"
    assert env.token not in result.stderr


def test_bad_log_format_is_a_config_error(tmp_path: Path, env: Env) -> None:
    env.extra["ROTATION_BOT_LOG_FORMAT"] = "xml"
    result = bot(env, "plan", "--repo", str(tmp_path))
    assert result.exit_code == 2
    assert "ROTATION_BOT_LOG_FORMAT must be text or json" in result.output
