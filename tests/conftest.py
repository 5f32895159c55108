"""Shared fixtures: a real Verdaccio with a fake sharp family, real npm, real git projects, and a
way to run the real `rotation-bot` command against them."""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import git
import pytest
from click.testing import CliRunner, Result

from bot.cli import main
from tests.support.git_fixture import commit_directory
from tests.support.postgres import Postgres, start_postgres
from tests.support.verdaccio import Verdaccio, publish_tools, running_verdaccio

PLATFORMS = {
    "linux-x64": {"os": ["linux"], "cpu": ["x64"], "libc": ["glibc"]},
    "linuxmusl-x64": {"os": ["linux"], "cpu": ["x64"], "libc": ["musl"]},
    "darwin-arm64": {"os": ["darwin"], "cpu": ["arm64"]},
}
# sharp version → the libvips version its binaries link; 0.33.7-rc.1 and 0.35.0-rc.0 are
# prereleases and never targets.
FAMILY = {
    "0.33.4": "1.0.2",
    "0.33.5": "1.0.4",
    "0.33.6": "1.0.4",
    "0.33.7-rc.1": "1.0.5",
    "0.34.0": "1.1.0",
    "0.34.1": "1.1.1",
    "0.35.0-rc.0": "1.2.0",
}
PINNED = ("linux-x64", "linuxmusl-x64")


def pin_names(platforms: tuple[str, ...] = PINNED) -> list[str]:
    """The four pinned package names, in runbook order."""
    return [name for p in platforms for name in (f"@img/sharp-{p}", f"@img/sharp-libvips-{p}")]


def publish_sharp(
    registry: Verdaccio,
    version: str,
    libvips: str,
    platforms: Mapping[str, Mapping[str, Any]] = PLATFORMS,
    parent_extra: Mapping[str, Any] | None = None,
) -> None:
    """Publish a fake sharp release with binaries and libvips packages for `platforms`
    (`parent_extra`: more fields of sharp's own manifest, e.g. `scripts`)."""
    optional: dict[str, str] = {}
    for platform, fields in platforms.items():
        vips = f"@img/sharp-libvips-{platform}"
        if f"{vips}@{libvips}" not in registry.published:
            registry.publish(
                vips,
                libvips,
                extra=dict(fields),
                files={"lib/libvips-cpp.so": f"libvips {libvips}".encode()},
            )
        registry.publish(
            f"@img/sharp-{platform}",
            version,
            extra={**fields, "optionalDependencies": {vips: libvips}},
            files={"lib/sharp.node": f"sharp {version} {platform}".encode()},
        )
        optional[f"@img/sharp-{platform}"] = version
        optional[vips] = libvips
    registry.publish(
        "sharp",
        version,
        extra={"main": "index.js", "optionalDependencies": optional, **(parent_extra or {})},
    )


def publish_releases(registry: Verdaccio, versions: Iterable[str]) -> None:
    """The FAMILY releases `versions` (a test that locks before newer releases exist)."""
    for version in versions:
        publish_sharp(registry, version, FAMILY[version])


def publish_family(registry: Verdaccio) -> None:
    """Every release in FAMILY, and the package-manager tools the bot installs."""
    publish_releases(registry, FAMILY)
    publish_tools(registry)


@pytest.fixture(scope="session")
def tools_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tool cache per test process: each manager is unpacked once, not once per test."""
    return tmp_path_factory.mktemp("tools")


@pytest.fixture(scope="session")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    """A shared Verdaccio holding the whole fake sharp family (tests must not tamper with it)."""
    with running_verdaccio(tmp_path_factory.mktemp("verdaccio")) as server:
        publish_family(server)
        yield server


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[Verdaccio]:
    """A Verdaccio of this test's own, with the family published, free to tamper with."""
    with running_verdaccio(tmp_path / "verdaccio") as server:
        publish_family(server)
        yield server


@pytest.fixture
def staged_registry(tmp_path: Path) -> Iterator[Verdaccio]:
    """A Verdaccio of this test's own holding only the package-manager tools: the test
    publishes the sharp releases it starts from, locks, then publishes the newer ones
    (`publish_releases`), as the layout fixtures prescribe."""
    with running_verdaccio(tmp_path / "verdaccio") as server:
        publish_tools(server)
        yield server


@dataclass
class Env:
    """The environment the bot and npm see in one test (nothing of the developer's leaks in)."""

    root: Path
    registry_url: str
    token: str
    extra: dict[str, str] = field(default_factory=dict)
    tools: Path | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def state(self) -> Path:
        return self.root / "state"

    def variables(self) -> dict[str, str]:
        npmrc = self.home / ".npmrc"
        if not npmrc.exists():
            host = self.registry_url.removeprefix("http:")
            npmrc.parent.mkdir(parents=True, exist_ok=True)
            npmrc.write_text(f"registry={self.registry_url}\n{host}:_authToken={self.token}\n")
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.home),
            "NPM_CONFIG_USERCONFIG": str(npmrc),
            "ROTATION_BOT_STATE_DIR": str(self.state),
            "ROTATION_BOT_RELEASE_NOTES_URL": "http://127.0.0.1:9",
            "USER": "tester",
            **({"ROTATION_BOT_TOOLS_DIR": str(self.tools)} if self.tools else {}),
            **self.extra,
        }


@pytest.fixture
def env(tmp_path: Path, registry: Verdaccio, tools_dir: Path) -> Env:
    """A clean environment pointing at the shared registry."""
    return Env(tmp_path, registry.url, registry.token, tools=tools_dir)


def npm_lock(project: Path, env: Env, *, omit_resolved: bool = False) -> None:
    """Generate a real lockfile with npm (scripts off) for the test project."""
    variables = env.variables()
    subprocess.run(
        [
            "npm",
            "install",
            "--package-lock-only",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            f"--omit-lockfile-registry-resolved={'true' if omit_resolved else 'false'}",
            "--cache",
            str(env.root / "npm-cache"),
        ],
        cwd=project,
        env={k: v for k, v in variables.items() if not k.startswith("ROTATION")},
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


DEFAULT_CONFIG = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n"


def make_project(
    path: Path,
    env: Env,
    *,
    sharp: str = "0.33.4",
    spec: str | None = None,
    overrides: Mapping[str, str] | None = None,
    config: str | None = DEFAULT_CONFIG,
    files: Mapping[str, str] | None = None,
    manifest_extra: Mapping[str, Any] | None = None,
    omit_resolved: bool = False,
    lock: bool = True,
) -> git.Repo:
    """A committed Node project pinned to `sharp` with a real lockfile, on branch main."""
    path.mkdir(parents=True, exist_ok=True)
    libvips = FAMILY[sharp]
    pins = (
        overrides
        if overrides is not None
        else {name: (libvips if "libvips" in name else sharp) for name in pin_names()}
    )
    manifest: dict[str, Any] = {
        "name": "fixture-app",
        "version": "1.0.0",
        "private": True,
        "dependencies": {"sharp": sharp},
        **({"overrides": dict(pins)} if pins else {}),
        **(manifest_extra or {}),
    }
    (path / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    if config is not None:
        (path / ".github").mkdir(exist_ok=True)
        (path / ".github" / "rotation-bot.yml").write_text(config)
    for name, text in (files or {}).items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    if lock:
        npm_lock(path, env, omit_resolved=omit_resolved)
    if spec is not None:  # a range, written after locking so the lock stays at `sharp`
        manifest["dependencies"]["sharp"] = spec
        (path / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return commit_directory(path)


def bot(env: Env, *args: str) -> Result:
    """Run the real `rotation-bot` command in-process with the test environment, its temporary
    directory under the test's own root (so it never sweeps, and warns about, what a test
    elsewhere killed in /tmp)."""
    runner = CliRunner()
    temporary = env.root / "tmp"
    temporary.mkdir(parents=True, exist_ok=True)
    previous, tempfile.tempdir = tempfile.tempdir, str(temporary)
    try:
        return runner.invoke(main, list(args), env=env.variables(), catch_exceptions=False)
    finally:
        tempfile.tempdir = previous


def bot_json(env: Env, *args: str) -> tuple[int, Any]:
    """Run with `--json` and parse stdout."""
    result = bot(env, *args, "--json")
    return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None


def lock_entries(text: str) -> dict[str, Any]:
    """The `packages` map of a lockfile text."""
    packages: dict[str, Any] = json.loads(text)["packages"]
    return packages


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session; each test makes its own database."""
    server = start_postgres()
    try:
        yield server
    finally:
        server.stop()
