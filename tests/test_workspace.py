"""The workspace on real checkouts: git never runs a program the checkout's config names, and
files are read through one capped, UTF-8-checked helper."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

import pytest

from bot.errors import ConfigError, ManifestError, RepositoryError
from bot.workspace import Workspace
from tests.conftest import Env, bot, make_project
from tests.support.git_fixture import commit_directory

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
HOOKS = (
    "post-checkout",
    "pre-commit",
    "commit-msg",
    "post-commit",
    "reference-transaction",
    "post-index-change",
    "pre-auto-gc",
)


def program(path: Path, marker: Path, then: str = "exit 0") -> str:
    """An executable that records its name and arguments in `marker`, then runs `then`."""
    path.write_text(f'#!/bin/sh\necho "$(basename "$0") $*" >> {marker}\n{then}\n')
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def booby_trap(root: Path, tools: Path, marker: Path) -> None:
    """What an attacker's (or a careless) checkout config can name: every one writes `marker`."""
    tools.mkdir()
    hooks = tools / "hooks"
    hooks.mkdir()
    for hook in HOOKS:
        program(hooks / hook, marker)
    settings = {
        "core.fsmonitor": program(tools / "fsmonitor", marker),
        "core.hooksPath": str(hooks),
        "core.sshCommand": program(tools / "ssh", marker),
        "core.askPass": program(tools / "askpass", marker),
        "credential.helper": program(tools / "credential", marker),
        "filter.evil.clean": program(tools / "clean", marker, "exec cat"),
        "filter.evil.smudge": program(tools / "smudge", marker, "exec cat"),
        "filter.evil.required": "true",
        "filter.Evil.Process.process": program(tools / "process", marker),
        "diff.evil.textconv": program(tools / "textconv", marker, 'exec cat "$1"'),
        "diff.evil.command": program(tools / "difftool", marker),
        "submodule.recurse": "true",
        "gc.auto": "1",
    }
    for key, value in settings.items():
        subprocess.run(
            ["git", "config", "--file", str(root / ".git" / "config"), key, value], check=True
        )


def test_git_runs_nothing_the_checkouts_config_names(tmp_path: Path, env: Env) -> None:
    root = tmp_path / "app"
    repo = make_project(root, env, config=NO_MAJOR)
    (root / ".gitattributes").write_text("* filter=evil diff=evil\n*.json filter=Evil.Process\n")
    repo.git.add("--all")
    repo.git.commit("-m", "attributes", "--no-verify")
    marker = tmp_path / "ran"
    booby_trap(root, tmp_path / "tools", marker)
    # The trap is armed: plain git on this checkout runs the checkout's programs.
    subprocess.run(["git", "status"], cwd=root, capture_output=True, check=False)
    assert marker.exists()
    marker.unlink()

    planned = bot(env, "plan", "--repo", str(root), "--runbook", "sharp")
    ran = bot(env, "run", "--repo", str(root), "--runbook", "sharp", "--json")

    assert planned.exit_code == 0, planned.output
    assert ran.exit_code == 0, ran.output
    assert json.loads(ran.stdout)[0]["outcome"] == "proposed"
    assert not marker.exists(), marker.read_text()
    branch = repo.commit("rotation-bot/sharp-0.33.6")
    assert json.loads(branch.tree["package.json"].data_stream.read())["overrides"]
    assert len(repo.git.worktree("list").splitlines()) == 1


def test_a_driver_name_that_cannot_be_overridden_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "README.md").write_text("hi\n")
    commit_directory(root)
    with (root / ".git" / "config").open("a") as config:
        config.write('[filter "a=b"]\n\tsmudge = /bin/false\n')

    with pytest.raises(
        RepositoryError, match=r"config key 'filter.a=b.smudge' cannot be overridden"
    ):
        Workspace.open_local(root)


def checkout(tmp_path: Path, files: dict[str, bytes]) -> Workspace:
    root = tmp_path / "app"
    root.mkdir()
    for name, data in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    commit_directory(root)
    return Workspace.open_local(root)


def test_files_are_read_within_their_kinds_cap(tmp_path: Path) -> None:
    workspace = checkout(
        tmp_path,
        {
            "package.json": b'{"name": "' + b"x" * (1024 * 1024) + b'"}',
            "package-lock.json": b"{}",
            ".npmrc": b"registry=http://127.0.0.1:9/\n" + b"#" * (64 * 1024),
            ".github/rotation-bot.yml": b"version: 1\n",
            "docs/pins.md": b"| a | b |\n",
        },
    )

    with pytest.raises(ManifestError) as package:
        workspace.read_text("package.json")
    with pytest.raises(ConfigError) as npmrc:
        workspace.read_text(".npmrc")

    assert str(package.value) == (
        "package.json is 1,048,588 bytes, over rotation-bot's 512 KiB cap for package.json; shrink it, or "
        "leave this repository out of what the bot serves"
    )
    assert str(npmrc.value).startswith(".npmrc is 65,565 bytes, over rotation-bot's 64 KiB cap")
    assert workspace.read_text("package-lock.json") == "{}"
    assert workspace.read_text(".github/rotation-bot.yml") == "version: 1\n"
    assert workspace.read_text("docs/pins.md") == "| a | b |\n"
    assert workspace.read_text("missing.json") is None


def test_a_path_inside_a_checkout_says_what_to_pass_instead(tmp_path: Path) -> None:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "package.json").write_text("{}\n")
    commit_directory(tmp_path)
    with pytest.raises(RepositoryError) as error:
        Workspace.open_local(tmp_path / "web")
    assert error.value.message == (
        f"{tmp_path / 'web'} is inside the checkout {tmp_path}: pass --repo {tmp_path} "
        "(rotation-bot finds every project in the repository; to rotate only this one, set "
        'runbooks.sharp.directories: ["web/"] in .github/rotation-bot.yml)'
    )
