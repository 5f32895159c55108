"""npm: package-lock.json, pins in `overrides`, `npm install --package-lock-only`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bot.managers.base import (
    PackageManager,
    Prepared,
    ScratchProject,
    Tool,
    manifest_files,
    write_npmrc,
)
from bot.manifests.locked import LockedTree
from bot.manifests.lockfile import parse_package_lock
from bot.sources.npm.settings import NpmSettings

# npm/cli#4828: older npm versions drop other platforms' optional packages from the lockfile.
# Without a `packageManager` field, the bot runs this npm (it has the fix), not whatever npm the
# host happens to have.
DEFAULT_NPM = "11.19.1"


class Npm(PackageManager):
    """npm 7+ (lockfileVersion 2 and 3)."""

    name = "npm"
    lockfile = "package-lock.json"
    tool_package = "npm"
    declared_as = "npm"
    pin_field = ("overrides",)
    install_command = "npm install"
    default_version = DEFAULT_NPM
    overrides_follow_dependencies = True

    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """The root package.json and lockfile, and every workspace member's package.json."""
        return manifest_files(directory, self.lockfile, members)

    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """`npm install --package-lock-only` with scripts, audit and funding messages off."""
        return (
            *tool.argv,
            "install",
            "--package-lock-only",
            "--ignore-scripts",
            "--no-audit",
            "--no-fund",
            "--no-update-notifier",
        )

    def prepare(self, project: ScratchProject, settings: NpmSettings) -> Prepared:
        """npm reads the sanitised config as the project's `.npmrc`."""
        return write_npmrc(project, settings)

    def parse_lock(
        self, text: str, *, source: str, manifests: Mapping[str, Mapping[str, Any]] | None = None
    ) -> LockedTree:
        """package-lock.json v2/v3 (it records the workspaces itself)."""
        return parse_package_lock(text, source=source)

    def tool_entry(self, package_dir: Path) -> Path:
        """npm's own `bin/npm-cli.js`."""
        return package_dir / "bin" / "npm-cli.js"
