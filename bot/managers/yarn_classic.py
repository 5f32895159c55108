"""Yarn 1 (classic): yarn.lock v1, pins in `resolutions`, workspaces from package.json.

Yarn 1 has no lockfile-only mode: it installs into the scratch copy (scripts off by flag, by
config and by environment; bin links off) and the bot keeps only the rewritten yarn.lock.  The
repository's `.yarnrc` is never copied (it can name a `yarn-path` binary); Yarn reads the
sanitised `.npmrc` of the scratch copy and the 0600 userconfig with the operator's registries
and credentials.  The lockfile's `integrity` is the npm tarball's sha512, compared with the
registry like npm's; it records no os/cpu/libc.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.managers.base import (
    PackageManager,
    Prepared,
    ScratchProject,
    Tool,
    ToolPlaces,
    manifest_files,
    write_npmrc,
)
from bot.manifests.locked import LockedTree
from bot.manifests.overrides import Target, yarn_resolution
from bot.manifests.yarn_lock import is_berry_lock, parse_classic_lock
from bot.sources.npm.settings import NpmSettings

DEFAULT_YARN_CLASSIC = "1.22.22"


def yarn_major(version: str) -> int | None:
    """The major version of a `packageManager` yarn version."""
    head = version.split(".", 1)[0]
    return int(head) if head.isdigit() else None


class YarnClassic(PackageManager):
    """Yarn 1.x."""

    name = "yarn-classic"
    lockfile = "yarn.lock"
    tool_package = "yarn"
    declared_as = "yarn"
    pin_field = ("resolutions",)
    install_command = "yarn install"
    default_version = DEFAULT_YARN_CLASSIC
    hook_files = (".yarnrc",)

    def claims(self, declared: tuple[str, str] | None, lock_text: Callable[[], str | None]) -> bool:
        """`packageManager: yarn@1.x`, or no yarn declared and a yarn.lock that is not Berry's."""
        if declared is not None and declared[0] == "yarn":
            return self.accepts(declared[1])
        return not is_berry_lock(lock_text() or "")

    def accepts(self, version: str) -> bool:
        """Yarn 1.x only."""
        return yarn_major(version) == 1

    def override_target(self, relative: tuple[str, ...]) -> Target | None:
        """`sharp`, `**/sharp`, `astro/sharp`."""
        return yarn_resolution(relative)

    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """package.json, yarn.lock and the members' package.json (no `.yarnrc`)."""
        return manifest_files(directory, self.lockfile, members)

    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """`yarn install` with scripts, bin links, engine checks and prompts off."""
        return (
            *tool.argv,
            "install",
            "--ignore-scripts",
            "--no-bin-links",
            "--ignore-engines",
            "--non-interactive",
            "--no-progress",
        )

    def prepare(self, project: ScratchProject, settings: NpmSettings) -> Prepared:
        """Yarn 1 reads the sanitised config as the project's `.npmrc`."""
        return write_npmrc(project, settings)

    def environment(
        self, base: Mapping[str, str], settings: NpmSettings, places: ToolPlaces
    ) -> dict[str, str]:
        """npm's environment (Yarn 1 reads the userconfig from the lower-case variable, and sends
        the registry's credentials for unscoped packages only with `always-auth`), its cache in
        the bot's cache, scripts and the self-update check off."""
        return {
            **base,
            "npm_config_userconfig": base["NPM_CONFIG_USERCONFIG"],
            "npm_config_always_auth": "true",
            "npm_config_ignore_scripts": "true",
            "YARN_IGNORE_SCRIPTS": "true",
            "YARN_CACHE_FOLDER": str(places.cache / "yarn-classic-cache"),
            "YARN_DISABLE_SELF_UPDATE_CHECK": "true",
        }

    def parse_lock(
        self, text: str, *, source: str, manifests: Mapping[str, Mapping[str, Any]] | None = None
    ) -> LockedTree:
        """yarn.lock v1; the workspaces' edges come from `manifests`."""
        return parse_classic_lock(text, source=source, manifests=manifests)

    def tool_entry(self, package_dir: Path) -> Path:
        """Yarn 1's `bin/yarn.js`."""
        return package_dir / "bin" / "yarn.js"
