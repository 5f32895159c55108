"""Repo config and service settings: validated, with errors that name the file and key."""

from __future__ import annotations

import json
import subprocess
from datetime import timedelta
from pathlib import Path

import pytest

from bot.config import check_branch_name, load_settings, parse_duration, parse_repo_config
from bot.errors import ConfigError, redact


def test_full_design_example_parses() -> None:
    config = parse_repo_config(
        "version: 1\nrunbooks:\n  sharp:\n    platforms: [linux-x64, linuxmusl-x64]\n"
        "    document: docs/supply-chain.md\n    minimum-release-age: 3d\n"
        "    schedule: '0 6 * * 1-5'\n  base-image:\n    dockerfiles: [Dockerfile]\n"
        "verify:\n  signatures: required\n  provenance: if-published\n"
        "pull-requests:\n  labels: [dependencies]\n  reviewers: [octocat]\n"
    )
    assert config.runbook("sharp").minimum_release_age == timedelta(days=3)
    assert config.runbook("sharp").platforms == ("linux-x64", "linuxmusl-x64")
    assert config.verify.signatures == "required"
    assert config.pull_requests.reviewers == ("octocat",)
    assert parse_repo_config(None).runbook("sharp").enabled


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("verify:\n  signature: off\n", "unknown key verify.signature"),
        ("verify:\n  signatures: maybe\n", "verify.signatures"),
        (
            "runbooks:\n  sharp:\n    minimum-release-age: soon\n",
            "runbooks.sharp.minimum-release-age",
        ),
        ("runbooks: [\n", "is not valid YAML"),
        ("- a\n", "expected a mapping"),
    ],
)
def test_bad_config_names_file_and_key(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=".github/rotation-bot.yml") as error:
        parse_repo_config(text)
    assert message in str(error.value) and "\n" not in str(error.value)


BRANCH_NAMES = [
    "main", "release/1.x", "feature/a.b", "héllo", "a@b", "x@", "a/-b", "a{b}",
    "main@{yesterday}", "main@{0}", "@{-1}", "@{u}", "-x", "a..b", "a//b", "/a", "a/", "a.",
    "a b", "a\tb", "a~1", "a^", "a:b", "a?", "a*", "a[b", "a\\b", ".a", "a/.b", "a.lock",
    "a/b.lock/c", "HEAD", "",
]  # fmt: skip


@pytest.mark.parametrize("name", BRANCH_NAMES)
def test_base_branch_follows_git_check_ref_format(name: str, tmp_path: Path) -> None:
    # outside any repository: inside one, git expands `@{-1}` to the previously checked-out branch
    git_accepts = (
        subprocess.run(
            ["git", "check-ref-format", "--branch", name],
            capture_output=True,
            check=False,
            cwd=tmp_path,
        ).returncode
        == 0
    )
    text = f"pull-requests:\n  base: {json.dumps(name)}\n"  # JSON strings are YAML too
    if git_accepts:
        assert parse_repo_config(text).pull_requests.base == name
        return
    with pytest.raises(ConfigError) as error:
        parse_repo_config(text)
    assert f"pull-requests.base: {name!r} is not a branch name" in str(error.value)
    assert "\n" not in str(error.value)


def test_a_lone_at_sign_is_refused_though_git_expands_it_to_the_current_branch() -> None:
    with pytest.raises(ValueError, match="revision expression"):
        check_branch_name("@")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: " + "[" * 20_000 + "]" * 20_000 + "\n", "nests deeper than 64 levels"),
        ("a:\n" + "".join("  " * i + "- \n" for i in range(1, 100)), "nests deeper than 64"),
        ("x: '" + "y" * 300_000 + "'\n", "over rotation-bot's 256 KiB cap"),
    ],
)
def test_hostile_config_text_is_a_one_line_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as error:
        parse_repo_config(text)
    assert str(error.value).startswith(".github/rotation-bot.yml") and "\n" not in str(error.value)


def test_durations() -> None:
    assert parse_duration("12h") == timedelta(hours=12)
    assert parse_duration(0) == timedelta(0)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("3 days")


def test_settings_from_env_toml_and_secret_files(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("ghs_file_secret_token\n")
    toml = tmp_path / "bot.toml"
    toml.write_text('repositories = ["a/b", "c/d"]\nlisten = "0.0.0.0:9000"\n')
    settings = load_settings(
        {"ROTATION_BOT_GITHUB_TOKEN_FILE": str(secret), "ROTATION_BOT_LISTEN": "127.0.0.1:1"}, toml
    )
    assert settings.github_token == "ghs_file_secret_token"
    assert settings.repositories == ("a/b", "c/d")
    assert settings.listen == "127.0.0.1:1"
    assert settings.has_github_credentials
    assert redact("Bearer ghs_file_secret_token") == "Bearer ***"
    toml.write_text("lissten = 1\n")
    with pytest.raises(ConfigError, match="unknown setting lissten"):
        load_settings({}, toml)


def test_counted_settings_are_whole_numbers_from_one() -> None:
    settings = load_settings({"ROTATION_BOT_WORKER_CONCURRENCY": "3"})
    assert settings.worker_concurrency == 3
    assert load_settings({}).worker_concurrency == 2
    for bad in ("0", "two", "1.5", "-1"):
        with pytest.raises(ConfigError) as raised:
            load_settings({"ROTATION_BOT_WORKER_CONCURRENCY": bad})
        assert str(raised.value) == (
            f"ROTATION_BOT_WORKER_CONCURRENCY={bad!r} must be a whole number from 1"
        )
