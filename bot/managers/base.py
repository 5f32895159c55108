"""The package-manager interface: one implementation per manager (npm, pnpm, Yarn 1, Yarn Berry),
like Renovate's managers.  Steps ask "regenerate the lockfile" or "read the locked packages" and
never branch on the manager's name.

A manager knows which files make up a project (so the lockfile can be regenerated in a scratch
copy that holds nothing else: no `node_modules`, no scripts, no hooks, no repository rc files
but its sanitised config), where its workspaces are declared, where a repository pins package
versions for it and in which override syntax (`overrides`, `pnpm.overrides`, pnpm-workspace.yaml,
`resolutions`), how to run its own tool with scripts off and with what environment, and how to
read its lockfile into a `LockedTree`.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from bot.manifests.locked import LockedTree
from bot.manifests.overrides import Target, npm_override
from bot.models import Project
from bot.sources.npm.settings import NpmSettings

Reader = Callable[[str], str | None]


@dataclass(frozen=True)
class Tool:
    """A package manager's own command, at the version the repository declares."""

    name: str
    version: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class ScratchProject:
    """A scratch copy of one project: its manifests and lockfile, nothing else (`location`:
    the project's directory in the repository, "" for the root, to name its files)."""

    directory: Path
    lockfile: Path
    location: str = ""


@dataclass(frozen=True)
class Prepared:
    """What a manager's `prepare` did to the scratch copy: repository settings it dropped (key
    names only, never values) and what it did not run or honour, for the evidence."""

    ignored: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ToolPlaces:
    """Where a run keeps a manager's state: a scratch directory (removed with the run) and the
    bot's persistent cache."""

    scratch: Path
    cache: Path


def workspaces_field(manifest: object) -> tuple[str, ...]:
    """The `workspaces` globs of a parsed package.json (array or `{packages: [...]}`)."""
    if not isinstance(manifest, dict):
        return ()
    workspaces = manifest.get("workspaces")
    if isinstance(workspaces, dict):
        workspaces = workspaces.get("packages")
    if not isinstance(workspaces, list):
        return ()
    return tuple(item for item in workspaces if isinstance(item, str) and item.strip())


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
    # what a user runs to bring the lockfile up to date (named in advice)
    install_command: ClassVar[str]
    # npm's EOVERRIDE rule: an override of a direct dependency must equal its spec
    overrides_follow_dependencies: ClassVar[bool] = False
    # repository files the manager would run or obey (hooks, its own rc with a binary path):
    # never copied into the scratch copy; the evidence names the ones a project has
    hook_files: ClassVar[tuple[str, ...]] = ()

    def claims(self, declared: tuple[str, str] | None, lock_text: Callable[[], str | None]) -> bool:
        """Whether this manager owns a project with its lockfile name, given the `packageManager`
        (tool name, version) it declares and its lockfile's text (read only when needed)."""
        return True

    def accepts(self, version: str) -> bool:
        """Whether a `packageManager` version of `declared_as` is this manager's."""
        return True

    def default_tool_version(self, lock_text: str) -> str:
        """The tool version to run when the project declares none (may follow the lockfile's
        format, so the lockfile is not rewritten in another one)."""
        return self.default_version

    def workspace_patterns(self, manifest: object, read: Reader) -> tuple[str, ...]:
        """The workspace globs of a project whose root package.json is `manifest`; `read` reads
        a file of the project directory by name."""
        return workspaces_field(manifest)

    def pin_location(self, project: Project, read: Reader) -> tuple[str, tuple[str, ...]]:
        """(file, key path) of the overrides the project pins versions in."""
        return project.path("package.json"), self.pin_field

    def override_target(self, relative: tuple[str, ...]) -> Target | None:
        """What one override key path applies to, in this manager's syntax."""
        return npm_override(relative)

    def check_config(self, project: Project, read: Reader) -> None:
        """Fail on a project config file the manager could not use at regenerate time, so the
        plan stops before any work (`read` reads a file of the project directory by name);
        npm's and pnpm's rc files are not read, so nothing to check."""
        return

    def documents(self, project: Project) -> tuple[str, ...]:
        """Files besides package.json that can hold a version spec of the project (read when
        present): pnpm-workspace.yaml with pnpm's catalogs and overrides."""
        return ()

    def spec_reference(self, name: str, spec: str) -> tuple[tuple[str, tuple[str, ...]], ...]:
        """Where a dependency spec that refers elsewhere really lives, as (file name in the
        project directory, key path) candidates in order (`catalog:` → pnpm-workspace.yaml
        `catalog.<name>`); empty for a spec that is its own value."""
        return ()

    @abstractmethod
    def project_files(self, directory: str, members: Sequence[str]) -> tuple[str, ...]:
        """The repository-relative files that make up a project rooted at `directory` with
        workspace `members` (its manifests, lockfile, workspace file and rc file)."""

    @abstractmethod
    def regenerate_argv(self, tool: Tool) -> tuple[str, ...]:
        """The command that rewrites the lockfile from the manifests, scripts off."""

    @abstractmethod
    def prepare(self, project: ScratchProject, settings: NpmSettings) -> Prepared:
        """Write the manager's sanitised project config into the scratch copy (replacing the
        repository's rc files copied there)."""

    def environment(
        self, base: Mapping[str, str], settings: NpmSettings, places: ToolPlaces
    ) -> dict[str, str]:
        """The tool's environment: npm's isolated one (`base`: allowlisted variables, the 0600
        userconfig with registries, credentials and scripts off), plus what the manager needs."""
        return dict(base)

    @abstractmethod
    def parse_lock(
        self, text: str, *, source: str, manifests: Mapping[str, Mapping[str, Any]] | None = None
    ) -> LockedTree:
        """Read a lockfile; a malformed one is a `ManifestError` naming `source`.  `manifests`
        (importer directory → parsed package.json) is for lockfiles that do not record the
        workspaces' own dependencies."""

    @abstractmethod
    def tool_entry(self, package_dir: Path) -> Path:
        """The JavaScript entry point of the manager's CLI inside its unpacked package."""


def join(directory: str, name: str) -> str:
    """`name` in the repository-relative `directory`."""
    return f"{directory}/{name}" if directory else name


def manifest_files(
    directory: str, lockfile: str, members: Sequence[str], *root_files: str
) -> tuple[str, ...]:
    """The files of a project rooted at `directory`: its package.json, its `lockfile` and its
    `root_files` (a workspace or rc file), then each workspace member's package.json."""
    return (
        join(directory, "package.json"),
        join(directory, lockfile),
        *(join(directory, name) for name in root_files),
        *(join(member, "package.json") for member in members),
    )


def write_npmrc(project: ScratchProject, settings: NpmSettings) -> Prepared:
    """Write the sanitised project config as the scratch copy's `.npmrc` (replacing the
    repository's); the settings it dropped are reported."""
    (project.directory / ".npmrc").write_text(settings.project.text(), encoding="utf-8")
    return Prepared(ignored=settings.project.dropped)


def read_json(read: Reader, path: str) -> object:
    """A parsed JSON file, or None when missing or unreadable (discovery tolerates both)."""
    try:
        text = read(path)
        return json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None
