"""The package-manager interface: one implementation per manager (npm, pnpm, Yarn), like
Renovate's managers.  Steps ask "regenerate the lockfile" or "read the locked packages" and
never branch on the manager's name.

A manager knows four things: which files make up a project (so the lockfile can be regenerated
in a scratch copy that holds nothing else: no `node_modules`, no scripts, no repository
`.npmrc`), where a repository pins package versions for it (`overrides`, `pnpm.overrides`,
`resolutions`), how to run its own tool with scripts off, and how to read its lockfile into a
`LockedTree`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from bot.manifests.locked import LockedTree


@dataclass(frozen=True)
class Tool:
    """A package manager's own command, at the version the repository declares."""

    name: str
    version: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ScratchProject:
    """A scratch copy of one project: its manifests and lockfile, nothing else."""

    directory: Path
    lockfile: Path


class PackageManager(ABC):
    """One package manager: its files, its pin field, its tool, its lockfile."""

    name: ClassVar[str]
    lockfile: ClassVar[str]
    tool_package: ClassVar[str]
    # the tool name a `packageManager` field uses for this manager (`npm@…`, `yarn@…`)
    declared_as: ClassVar[str]
    # the tool version used when the repository's package.json has no `packageManager`
    default_version: ClassVar[str]
    # where the bot adds pins in the root package.json when the repository has none
    pin_field: ClassVar[tuple[str, ...]]

    @abstractmethod
    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """The repository-relative files that make up a project rooted at `directory` with
        workspace `members` (its manifests, lockfile and workspace file)."""

    @abstractmethod
    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """The command that rewrites the lockfile from the manifests, scripts off."""

    @abstractmethod
    def prepare(self, project: ScratchProject, project_config: str) -> None:
        """Write the manager's sanitised project config into the scratch copy."""

    @abstractmethod
    def parse_lock(self, text: str, *, source: str) -> LockedTree:
        """Read a lockfile; a malformed one is a `ManifestError` naming `source`."""

    @abstractmethod
    def tool_entry(self, package_dir: Path) -> Path:
        """The JavaScript entry point of the manager's CLI inside its unpacked package."""
