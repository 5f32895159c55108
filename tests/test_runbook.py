"""Runbooks are data: shipped ones load, every step kind resolves, bad files are config errors,
and another package family is a new YAML file, not new code."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from bot.errors import ConfigError
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbook, load_runbooks
from bot.steps.registry import get_step, known_steps
from tests.conftest import Env, bot, bot_json, npm_lock
from tests.support.git_fixture import commit_directory
from tests.support.verdaccio import Verdaccio


def test_shipped_runbooks_load_and_every_step_kind_resolves() -> None:
    runbooks = load_runbooks(DEFAULT_RUNBOOKS_DIR)
    assert set(runbooks) == {"sharp", "base-image"}
    assert runbooks["sharp"].pins is not None
    assert runbooks["sharp"].pins.names(("linux-x64",)) == (
        "@img/sharp-linux-x64",
        "@img/sharp-libvips-linux-x64",
    )
    for kind in known_steps():
        assert callable(get_step(kind))
    for runbook in runbooks.values():
        assert (DEFAULT_RUNBOOKS_DIR.parent / str(runbook.document)).is_file()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "name: x\ntitle: t\nsteps: [bump-overides]\n",
            "unknown step kind 'bump-overides'; known kinds: ",
        ),
        (
            "name: x\ntitle: t\nsteps: [bump-pins]\nwatch: {npm: sharp, releases: x}\n",
            "unknown key watch.releases",
        ),
        ("name: y\ntitle: t\nsteps: [bump-pins]\n", "must match the file name"),
        ("name: x\ntitle: t\nsteps: [bump-pins, propose]\n", "'propose' is not a step"),
        ("name: x\ntitle: t\nsteps: []\n", "steps"),
    ],
)
def test_bad_runbooks_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "x.yml").write_text(text)
    with pytest.raises(ConfigError, match=str(tmp_path / "x.yml")) as error:
        load_runbook(tmp_path / "x.yml")
    assert message in str(error.value)


ESBUILD = """\
name: esbuild
title: Rotate esbuild's native binaries
document: runbooks/esbuild.md
watch: {npm: esbuild}
pins:
  derive-from: optionalDependencies
  packages: ["@esbuild/{platform}"]
  platforms: [linux-x64, linux-arm64]
steps: [bump-pins, regenerate-lockfile, confirm-lockfile, verify-tarballs]
"""


def test_another_family_is_a_new_runbook_file(
    tmp_path: Path, env: Env, registry: Verdaccio
) -> None:
    runbooks = tmp_path / "runbooks"
    shutil.copytree(DEFAULT_RUNBOOKS_DIR, runbooks)
    (runbooks / "esbuild.yml").write_text(ESBUILD)
    env.extra["ROTATION_BOT_RUNBOOKS_DIR"] = str(runbooks)
    platforms = {"linux-x64": (["linux"], ["x64"]), "linux-arm64": (["linux"], ["arm64"])}
    for version in ("0.20.0", "0.20.2"):
        if f"esbuild@{version}" in registry.published:
            continue
        for platform, (os_, cpu) in platforms.items():
            registry.publish(f"@esbuild/{platform}", version, extra={"os": os_, "cpu": cpu})
        registry.publish(
            "esbuild",
            version,
            extra={
                "optionalDependencies": {f"@esbuild/{platform}": version for platform in platforms}
            },
        )
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps(
            {
                "name": "app",
                "dependencies": {"esbuild": "0.20.0"},
                "overrides": {"@esbuild/linux-x64": "0.20.0", "@esbuild/linux-arm64": "0.20.0"},
            },
            indent=2,
        )
    )
    (project / ".github").mkdir()
    (project / ".github" / "rotation-bot.yml").write_text(
        "runbooks:\n  esbuild:\n    minimum-release-age: 0\n"
    )
    npm_lock(project, env)
    repo = commit_directory(project)

    code, plans = bot_json(env, "plan", "--repo", str(project), "--runbook", "esbuild")
    assert code == 0
    assert [(r["kind"], r["new_version"]) for r in plans[0]["rotations"]] == [("patch", "0.20.2")]
    result = bot(env, "run", "--repo", str(project), "--runbook", "esbuild")
    assert result.exit_code == 0, result.output
    manifest = json.loads(repo.git.show("rotation-bot/esbuild-0.20.2:package.json"))
    assert manifest["overrides"] == {
        "@esbuild/linux-x64": "0.20.2",
        "@esbuild/linux-arm64": "0.20.2",
    }
