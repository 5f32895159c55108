"""Repository layouts from tests/fixtures/layouts/ made into real repositories.

A layout's `fixture.json` names the packages it needs, the sharp version(s) its lockfile starts
at and how each lockfile is produced.  `build_layout` copies the layout's files byte for byte,
publishes its fake packages and ONLY the start version(s) of the sharp family into an empty
Verdaccio, locks every project with real npm (caret ranges resolve to the newest version visible,
so the rest of the family is published only afterwards), commits, then publishes the rest of the
family and the package-manager tools the bot installs.

The pnpm and Yarn layouts are locked by `layout_repository` with the real package manager the
fixture names: the tarballs the test set-up packed (tests/harness/tools/), unpacked here once per
test process apart from the bot's own verified copies, run with scripts off against the test's
Verdaccio, with their state in the test's directory.
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import git

from tests.conftest import DEFAULT_CONFIG, FAMILY, Env, publish_releases, publish_sharp
from tests.support.git_fixture import commit_directory
from tests.support.verdaccio import TOOLS, Verdaccio, publish_tools

LAYOUTS = Path(__file__).resolve().parent.parent / "fixtures" / "layouts"
# what a sharp or @img/sharp-<platform> lockfile key ends with (libvips versions are not sharp's)
_SHARP_KEY = re.compile(r"(?:^|/)node_modules/(?:sharp|@img/sharp-(?!libvips-)[a-z0-9-]+)$")
# manager → (tool package, the command that writes its lockfile with scripts off)
LOCK_COMMANDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "pnpm": ("pnpm", ("install", "--lockfile-only", "--ignore-scripts", "--ignore-pnpmfile")),
    "yarn-classic": (
        "yarn",
        ("install", "--ignore-scripts", "--non-interactive", "--no-bin-links", "--ignore-engines"),
    ),
    "yarn-berry": ("@yarnpkg/cli-dist", ("install", "--mode=update-lockfile")),
}
ENTRIES = {"pnpm": "bin/pnpm.cjs", "yarn": "bin/yarn.js", "@yarnpkg/cli-dist": "bin/yarn.js"}


@dataclass(frozen=True)
class Layout:
    """One fixture directory and its parsed fixture.json."""

    name: str
    directory: Path
    spec: Mapping[str, Any]

    @property
    def files(self) -> tuple[str, ...]:
        """The repository's files (relative, sorted), fixture.json excluded."""
        return tuple(
            sorted(
                path.relative_to(self.directory).as_posix()
                for path in self.directory.rglob("*")
                if path.is_file() and path.name != "fixture.json"
            )
        )

    def start_states(self) -> dict[str, dict[str, str]]:
        """lockfile key → version at the start, per project directory ("." for the root)."""
        start = self.spec["lock"]["start_state"]
        if all(isinstance(value, str) for value in start.values()):
            return {".": dict(start)}
        return {directory: dict(entries) for directory, entries in start.items()}

    def start_versions(self) -> tuple[str, ...]:
        """The sharp versions the starting lockfiles hold (sharp itself or its binaries)."""
        return tuple(
            sorted(
                {
                    version
                    for entries in self.start_states().values()
                    for key, version in entries.items()
                    if _SHARP_KEY.search(key)
                }
            )
        )

    def projects(self) -> tuple[Mapping[str, Any], ...]:
        """The expected projects (`expect.projects`)."""
        return tuple(self.spec["expect"]["projects"])


def load_layout(name: str) -> Layout:
    """The layout `name` (a directory of tests/fixtures/layouts)."""
    directory = LAYOUTS / name
    spec = json.loads((directory / "fixture.json").read_text(encoding="utf-8"))
    return Layout(name, directory, spec)


def publish_fake_packages(registry: Verdaccio, packages: Iterable[Mapping[str, Any]]) -> None:
    """Publish each `fake_packages` manifest as README.md says (once per registry)."""
    for package in packages:
        if f"{package['name']}@{package['version']}" in registry.published:
            continue
        extra = {key: value for key, value in package.items() if key not in ("name", "version")}
        registry.publish(package["name"], package["version"], extra=extra)


def npm_lock_in(
    directory: Path, variables: Mapping[str, str], cache: Path, npm: Sequence[str] = ("npm",)
) -> None:
    """`npm install --package-lock-only` in `directory` with `npm` (the host's by default),
    scripts off."""
    subprocess.run(
        [
            *npm,
            "install",
            "--package-lock-only",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--omit-lockfile-registry-resolved=false",
            "--cache",
            str(cache),
        ],
        cwd=directory,
        env={key: value for key, value in variables.items() if not key.startswith("ROTATION")},
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
    )


def build_layout(
    layout: Layout,
    path: Path,
    registry: Verdaccio,
    variables: Mapping[str, str],
    *,
    config: str | None,
    family: Mapping[str, str] = FAMILY,
    before_lock: Callable[[Path], None] | None = None,
    after_lock: Callable[[Path], None] | None = None,
    npm: Sequence[str] = ("npm",),
) -> git.Repo:
    """The layout as a committed repository at `path` with real lockfiles (see the module
    docstring); afterwards the registry holds every release of `family` and the tools.
    `before_lock` changes the copied files before npm locks them (a variant of the layout);
    `after_lock` changes them after (a hand edit the lockfile never saw); `npm` is the command
    that locks (the one the layout's packageManager names, say)."""
    shutil.copytree(
        layout.directory, path, ignore=shutil.ignore_patterns("fixture.json"), dirs_exist_ok=False
    )
    publish_fake_packages(registry, layout.spec.get("fake_packages", ()))
    for version in layout.start_versions():
        publish_sharp(registry, version, family[version])
    if before_lock is not None:
        before_lock(path)
    cache = path.parent / f"{path.name}-npm-cache"
    for item in layout.spec["lock"]["generate"]:
        npm_lock_in(path / item["dir"], variables, cache, npm)
    shutil.rmtree(cache, ignore_errors=True)
    if after_lock is not None:
        after_lock(path)
    if config is not None:
        (path / ".github").mkdir(exist_ok=True)
        (path / ".github" / "rotation-bot.yml").write_text(config, encoding="utf-8")
    repo = commit_directory(path)
    for version, libvips in family.items():
        if f"sharp@{version}" not in registry.published:
            publish_sharp(registry, version, libvips)
    publish_tools(registry)
    return repo


def tool_entry(package: str, version: str, directory: Path) -> Path:
    """The CLI entry of a packed tool, unpacked under `directory`/harness once (apart from the
    bot's own verified copies in `directory`)."""
    target = directory / "harness" / f"{package.replace('/', '+')}@{version}"
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        tarball = TOOLS / f"{package.removeprefix('@').replace('/', '-')}-{version}.tgz"
        staging = target.parent / f".{target.name}.staging-{os.getpid()}"
        with tarfile.open(fileobj=io.BytesIO(tarball.read_bytes()), mode="r:gz") as archive:
            archive.extractall(staging, filter="data")
        try:
            staging.rename(target)
        except OSError:
            shutil.rmtree(staging, ignore_errors=True)
    return target / "package" / ENTRIES[package]


def lock_environment(manager: str, root: Path, registry: Verdaccio) -> dict[str, str]:
    """An environment that points `manager` at `registry` and nothing of the developer's."""
    home = root / "lock-home"
    home.mkdir(parents=True, exist_ok=True)
    npmrc = home / ".npmrc"
    host = registry.url.removeprefix("http:")
    npmrc.write_text(f"registry={registry.url}\n{host}:_authToken={registry.token}\n")
    (home / ".yarnrc.yml").write_text(
        f'npmRegistryServer: "{registry.url.rstrip("/")}"\n'
        'unsafeHttpWhitelist: ["127.0.0.1"]\nenableTelemetry: false\n'
        f'npmAuthToken: "{registry.token}"\nnpmAlwaysAuth: true\n'
    )
    base = {"PATH": os.environ["PATH"], "HOME": str(home)}
    if manager == "yarn-berry":
        return {
            **base,
            "YARN_IGNORE_PATH": "1",
            "YARN_ENABLE_SCRIPTS": "false",
            "YARN_ENABLE_GLOBAL_CACHE": "false",
            "YARN_CACHE_FOLDER": str(root / "lock-cache" / "berry"),
        }
    return {
        **base,
        "NPM_CONFIG_USERCONFIG": str(npmrc),
        "npm_config_userconfig": str(npmrc),
        "npm_config_always_auth": "true",
        "NPM_CONFIG_GLOBALCONFIG": os.devnull,
        "npm_config_manage_package_manager_versions": "false",
        "npm_config_store_dir": str(root / "lock-cache" / "pnpm-store"),
        "npm_config_cache_dir": str(root / "lock-cache" / "pnpm-cache"),
        "YARN_CACHE_FOLDER": str(root / "lock-cache" / "yarn1"),
    }


def lock_with(manager: str, version: str, project: Path, registry: Verdaccio, tools: Path) -> None:
    """Write `project`'s lockfile with the real `manager` at `version`, keeping nothing else it
    creates (node_modules, .yarn install state)."""
    package, arguments = LOCK_COMMANDS[manager]
    entry = tool_entry(package, version, tools)
    subprocess.run(
        ["node", str(entry), *arguments],
        cwd=project,
        env=lock_environment(manager, project.parent, registry),
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )
    for leftover in ("node_modules", ".yarn", ".pnp.cjs", ".pnp.loader.mjs"):
        path = project / leftover
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def layout_repository(
    name: str,
    path: Path,
    registry: Verdaccio,
    tools: Path,
    *,
    versions: Mapping[str, str],
    config: str,
    change: Callable[[Path], None] | None = None,
) -> git.Repo:
    """The pnpm or Yarn layout `name` as a committed repository at `path`: its files (then
    `change`d, for a variant of the layout), `.github/rotation-bot.yml` = `config`, its fake
    packages published, and each project directory in `versions` (directory → tool version)
    locked with the layout's manager.  The test publishes the sharp releases itself."""
    layout = load_layout(name)
    shutil.copytree(layout.directory, path, ignore=shutil.ignore_patterns("fixture.json"))
    if change is not None:
        change(path)
    (path / ".github").mkdir(exist_ok=True)
    (path / ".github" / "rotation-bot.yml").write_text(config)
    publish_fake_packages(registry, layout.spec.get("fake_packages", ()))
    for directory, version in versions.items():
        lock_with(layout.spec["manager"], version, path / directory, registry, tools)
    return commit_directory(path)


class StagedLayout(NamedTuple):
    """A staged layout repository and the environment that runs the bot on it."""

    env: Env
    path: Path
    repo: git.Repo


def staged_layout(
    name: str,
    root: Path,
    registry: Verdaccio,
    tools: Path,
    *,
    repository: str,
    start: Sequence[str],
    versions: Mapping[str, str],
    change: Callable[[Path], None] | None = None,
) -> StagedLayout:
    """The layout `name` as the repository `root`/`repository` (`layout_repository` with
    `DEFAULT_CONFIG`), locked while `registry` holds only the sharp releases `start`; the rest of
    FAMILY is published afterwards, so the bot finds newer releases to rotate to.  The bot's
    environment lives in `root` and reads `registry` with its token and the tool cache `tools`."""
    env = Env(root, registry.url, registry.token, tools=tools)
    path = root / repository
    publish_releases(registry, start)
    repo = layout_repository(
        name, path, registry, tools, versions=versions, config=DEFAULT_CONFIG, change=change
    )
    publish_releases(registry, [version for version in FAMILY if version not in start])
    return StagedLayout(env, path, repo)


def edit_json_text(path: Path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in the file at `path` (a hand edit: every other byte
    stays)."""
    text = path.read_text(encoding="utf-8")
    assert text.count(old) == 1, (path, old)
    path.write_text(text.replace(old, new), encoding="utf-8")


def expected_file(original: bytes, edits: Iterable[Mapping[str, Any]]) -> bytes:
    """`original` with each edit's 1-based `line` replaced by `line_after`, after checking the
    line holds `line_before`; every other byte (line endings, a missing final newline) kept."""
    lines = original.decode("utf-8").splitlines(keepends=True)
    for edit in edits:
        index = edit["line"] - 1
        body = lines[index].rstrip("\r\n")
        assert body == edit["line_before"], (edit["file"], body)
        lines[index] = edit["line_after"] + lines[index][len(body) :]
    return "".join(lines).encode("utf-8")
