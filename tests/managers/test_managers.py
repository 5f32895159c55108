"""Each manager's choices without running it: which manager owns a project, where its
workspaces and pins live, which tool version runs by default, and what of the repository's
config reaches the tool (the sanitised pnpm-workspace.yaml and .yarnrc.yml, the 0600 rc with the
operator's credentials, the environment)."""

from __future__ import annotations

import json
import os
import stat
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from bot.errors import ManifestError
from bot.managers import MANAGERS, manager_for
from bot.managers.base import ScratchProject, ToolPlaces
from bot.managers.discovery import discover
from bot.models import Project
from bot.sources.npm.settings import NpmSettings, ProjectConfig

BERRY_LOCK = "__metadata:\n  version: 8\n  cacheKey: 10c0\n"
CLASSIC_LOCK = "# yarn lockfile v1\n"
OPERATOR = NpmSettings(
    registry="https://npm.internal.example/",
    scoped_registries=(("@img", "https://img.internal.example/npm/"),),
    credentials=(("//npm.internal.example/", "_authToken", "operator-token"),),
    project=ProjectConfig((("legacy-peer-deps", "true"),), ("script-shell",)),
)


@pytest.mark.parametrize(
    ("package_manager", "lock", "expected"),
    [
        (None, CLASSIC_LOCK, "yarn-classic"),
        (None, BERRY_LOCK, "yarn-berry"),
        ("yarn@1.22.22", BERRY_LOCK, "yarn-classic"),  # the declared tool wins
        ("yarn@4.18.0+sha512.abc", CLASSIC_LOCK, "yarn-berry"),
        ("yarn@3.6.0", "", "yarn-berry"),
        ("pnpm@10.32.1", CLASSIC_LOCK, "yarn-classic"),  # not a yarn declaration
    ],
)
def test_yarn_lock_goes_to_classic_or_berry(
    package_manager: str | None, lock: str, expected: str
) -> None:
    assert manager_for("yarn.lock", package_manager, lambda: lock) == expected


def test_discovery_reads_pnpm_workspaces_from_the_workspace_file() -> None:
    files = {
        "package.json": json.dumps({"workspaces": ["ignored/*"]}),
        "pnpm-lock.yaml": "lockfileVersion: '9.0'\n",
        "pnpm-workspace.yaml": "packages:\n  - 'apps/*'\n  - '!apps/legacy'\n",
        "apps/web/package.json": "{}",
        "apps/legacy/package.json": "{}",
        "ignored/x/package.json": "{}",
        "tools/berry/package.json": json.dumps({"packageManager": "yarn@4.18.0"}),
        "tools/berry/yarn.lock": BERRY_LOCK,
    }
    found = discover(list(files), files.get)
    root, berry = found.projects
    assert (root.manager, root.members) == ("pnpm", ("apps/web",))
    assert (berry.manager, berry.lockfile, berry.package_manager) == (
        "yarn-berry",
        "tools/berry/yarn.lock",
        "yarn@4.18.0",
    )
    assert dict(found.orphans) == {
        "apps/legacy": "has a package.json but no lockfile",
        "ignored/x": "has a package.json but no lockfile",
    }


def test_pins_live_in_the_workspace_file_only_when_it_has_overrides() -> None:
    pnpm = MANAGERS["pnpm"]
    project = Project("web", "pnpm", "web/pnpm-lock.yaml")
    with_overrides = {"pnpm-workspace.yaml": "overrides:\n  sharp: ^0.33.5\n"}
    assert pnpm.pin_location(project, with_overrides.get) == (
        "web/pnpm-workspace.yaml",
        ("overrides",),
    )
    assert pnpm.pin_location(project, {"pnpm-workspace.yaml": "packages: []\n"}.get) == (
        "web/package.json",
        ("pnpm", "overrides"),
    )
    assert MANAGERS["yarn-berry"].pin_location(project, {}.get) == (
        "web/package.json",
        ("resolutions",),
    )


def test_default_tool_versions_follow_the_lockfile_format() -> None:
    pnpm, berry = MANAGERS["pnpm"], MANAGERS["yarn-berry"]
    assert pnpm.default_tool_version("lockfileVersion: '6.0'\n") == "8.15.9"
    assert pnpm.default_tool_version("lockfileVersion: '9.0'\n") == "10.32.1"
    assert berry.default_tool_version("__metadata:\n  version: 6\n  cacheKey: 8\n") == "3.8.7"
    assert berry.default_tool_version(BERRY_LOCK) == "4.18.0"
    assert MANAGERS["yarn-classic"].default_tool_version(CLASSIC_LOCK) == "1.22.22"
    assert not MANAGERS["yarn-classic"].accepts("4.18.0")
    assert not MANAGERS["yarn-berry"].accepts("1.22.22")


def scratch(tmp_path: Path, files: dict[str, str]) -> ScratchProject:
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    return ScratchProject(tmp_path, tmp_path / "lock")


def test_pnpm_keeps_only_resolution_settings_of_the_workspace_file(tmp_path: Path) -> None:
    project = scratch(
        tmp_path,
        {
            "pnpm-workspace.yaml": "packages: [web]\noverrides:\n  sharp: ^0.33.5\n"
            "supportedArchitectures:\n  libc: [musl]\npnpmfile: hooks/evil.cjs\n"
            "configDependencies:\n  evil: 1.0.0+sha512-x\nscriptShell: ./sh\n"
        },
    )

    prepared = MANAGERS["pnpm"].prepare(project, OPERATOR)

    assert yaml.safe_load((tmp_path / "pnpm-workspace.yaml").read_text()) == {
        "packages": ["web"],
        "overrides": {"sharp": "^0.33.5"},
        "supportedArchitectures": {"libc": ["musl"]},
    }
    assert prepared.ignored == (
        "script-shell",
        "pnpm-workspace.yaml: configDependencies",
        "pnpm-workspace.yaml: pnpmfile",
        "pnpm-workspace.yaml: scriptShell",
    )
    assert (tmp_path / ".npmrc").read_text() == "legacy-peer-deps=true\n"


def test_berry_rc_keeps_resolution_settings_and_only_the_operators_registries(
    tmp_path: Path,
) -> None:
    project = scratch(
        tmp_path,
        {
            ".yarnrc.yml": "yarnPath: .yarn/releases/yarn-3.6.0.cjs\nenableScripts: true\n"
            "plugins:\n  - path: .yarn/plugins/x.cjs\nnodeLinker: node-modules\n"
            "supportedArchitectures:\n  os: [linux, darwin]\n"
            "npmRegistryServer: https://attacker.example\nnpmAuthToken: from-the-repo\n"
            "npmScopes:\n  img:\n    npmRegistryServer: https://img.internal.example/npm\n"
            "injectEnvironmentFiles: [.env]\n"
        },
    )

    prepared = MANAGERS["yarn-berry"].prepare(project, OPERATOR)

    assert yaml.safe_load((tmp_path / ".yarnrc.yml").read_text()) == {
        "nodeLinker": "node-modules",
        "supportedArchitectures": {"os": ["linux", "darwin"]},
        "npmScopes": {"img": {"npmRegistryServer": "https://img.internal.example/npm"}},
    }
    assert set(prepared.ignored) == {
        ".yarnrc.yml: yarnPath",
        ".yarnrc.yml: enableScripts",
        ".yarnrc.yml: plugins",
        ".yarnrc.yml: npmRegistryServer",
        ".yarnrc.yml: npmAuthToken",
        ".yarnrc.yml: injectEnvironmentFiles",
    }
    assert len(prepared.notes) == 3


def test_a_sub_directory_projects_config_is_named_with_its_directory(tmp_path: Path) -> None:
    (tmp_path / "ok").mkdir()
    (tmp_path / "bad").mkdir()
    berry = MANAGERS["yarn-berry"]
    ok = scratch(tmp_path / "ok", {".yarnrc.yml": "yarnPath: .yarn/releases/y.cjs\n"})
    bad = scratch(tmp_path / "bad", {".yarnrc.yml": "- a\n"})
    workspace = scratch(tmp_path / "ok", {"pnpm-workspace.yaml": "pnpmfile: x.cjs\n"})

    prepared = berry.prepare(replace(ok, location="web"), OPERATOR)
    assert prepared.ignored == ("web/.yarnrc.yml: yarnPath",)
    assert prepared.notes[0].startswith("web/.yarnrc.yml yarnPath '.yarn/releases/y.cjs'")
    with pytest.raises(ManifestError, match=r"^web/\.yarnrc\.yml must hold a YAML mapping"):
        berry.prepare(replace(bad, location="web"), OPERATOR)
    pnpm = MANAGERS["pnpm"].prepare(replace(workspace, location="apps/site"), OPERATOR)
    assert "apps/site/pnpm-workspace.yaml: pnpmfile" in pnpm.ignored


def test_berry_gets_the_operators_credentials_in_a_private_rc_and_known_variables(
    tmp_path: Path,
) -> None:
    base = {"PATH": "/usr/bin", "HOME": "/root", "NPM_CONFIG_USERCONFIG": "/x/npmrc"}
    (tmp_path / "scratch").mkdir()
    places = ToolPlaces(tmp_path / "scratch", tmp_path / "state")
    env = MANAGERS["yarn-berry"].environment(base, OPERATOR, places)

    rc = Path(env["HOME"]) / ".yarnrc.yml"
    assert stat.S_IMODE(os.stat(rc).st_mode) == 0o600
    assert rc.is_relative_to(tmp_path / "scratch")
    assert yaml.safe_load(rc.read_text()) == {
        "npmRegistryServer": "https://npm.internal.example",
        "enableScripts": False,
        "enableTelemetry": False,
        "npmScopes": {"img": {"npmRegistryServer": "https://img.internal.example/npm"}},
        "npmRegistries": {
            "https://npm.internal.example": {
                "npmAuthToken": "operator-token",
                "npmAlwaysAuth": True,
            }
        },
    }
    assert "NPM_CONFIG_USERCONFIG" not in env
    assert env["YARN_IGNORE_PATH"] == "1" and env["YARN_ENABLE_SCRIPTS"] == "false"
    # Berry refuses unknown YARN_* variables: only settings every version knows
    assert {key for key in env if key.startswith("YARN_")} == {
        "YARN_IGNORE_PATH",
        "YARN_ENABLE_SCRIPTS",
        "YARN_ENABLE_TELEMETRY",
        "YARN_ENABLE_GLOBAL_CACHE",
        "YARN_ENABLE_IMMUTABLE_INSTALLS",
        "YARN_CACHE_FOLDER",
        "YARN_GLOBAL_FOLDER",
    }
