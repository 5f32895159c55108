"""Find every Node.js project in a repository, like Renovate's npm manager does.

A project is a directory with a package.json and a lockfile: the root, or an independent
sub-directory (`web/`, `server/`) with its own; its manager follows from the lockfile and the
`packageManager` field.  Its workspace members (where the manager declares them: the root
package.json's `workspaces` globs for npm and Yarn, pnpm-workspace.yaml `packages` for pnpm)
share its lockfile.  `node_modules/` is never looked
into; the repository config's `directories:` (gitignore-style patterns, `!` to exclude) narrows
the search.  Pure: the caller passes the tracked paths and a reader.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from posixpath import dirname

import pathspec

from bot.managers import FOREIGN_LOCKFILES, LOCKFILES, MANAGERS, manager_for
from bot.managers.base import read_json
from bot.models import Project

Reader = Callable[[str], str | None]


@dataclass(frozen=True)
class Discovery:
    """The projects found, and package.json directories that belong to none (with why)."""

    projects: tuple[Project, ...]
    orphans: tuple[tuple[str, str], ...] = ()


@cache
def _glob(pattern: str) -> re.Pattern[str]:
    """A workspace glob as a regex over directory paths: `*` stays within one segment,
    `**` crosses segments."""
    parts = []
    index = 0
    while index < len(pattern):
        if pattern.startswith("**/", index):
            parts.append("(?:.*/)?")
            index += 3
        elif pattern.startswith("**", index):
            parts.append(".*")
            index += 2
        elif pattern[index] == "*":
            parts.append("[^/]*")
            index += 1
        elif pattern[index] == "?":
            parts.append("[^/]")
            index += 1
        else:
            parts.append(re.escape(pattern[index]))
            index += 1
    return re.compile("".join(parts))


def _normalize(pattern: str) -> str:
    pattern = pattern.strip()
    while pattern.startswith("./"):
        pattern = pattern[2:]
    return pattern.rstrip("/")


def match_members(root: str, patterns: Sequence[str], candidates: Iterable[str]) -> tuple[str, ...]:
    """The candidate directories (repository-relative) that `patterns` select under `root`."""
    include = [_glob(pattern) for pattern in patterns if not pattern.startswith("!")]
    exclude = [_glob(_normalize(pattern[1:])) for pattern in patterns if pattern.startswith("!")]
    members = []
    for directory in candidates:
        if directory == root:
            continue
        relative = directory[len(root) + 1 :] if root else directory
        if root and not directory.startswith(root + "/"):
            continue
        if any(rx.fullmatch(relative) for rx in include) and not any(
            rx.fullmatch(relative) for rx in exclude
        ):
            members.append(directory)
    return tuple(sorted(members))


def discover(paths: Iterable[str], read: Reader, *, directories: Sequence[str] = ()) -> Discovery:
    """Every project among the tracked `paths`; `directories` narrows which are considered."""
    tracked = set(paths)
    selector = pathspec.GitIgnoreSpec.from_lines(list(directories)) if directories else None
    manifest_dirs = sorted(
        {
            dirname(path)
            for path in tracked
            if (path == "package.json" or path.endswith("/package.json"))
            and "node_modules" not in path.split("/")
        },
        key=lambda directory: (directory.count("/"), directory),
    )
    if selector is not None:
        manifest_dirs = [
            directory
            for directory in manifest_dirs
            if selector.match_file((directory or ".") + "/")
        ]

    def file_in(directory: str, name: str) -> str:
        return f"{directory}/{name}" if directory else name

    projects: list[Project] = []
    claimed: set[str] = set()
    orphans: list[tuple[str, str]] = []
    for directory in manifest_dirs:
        if directory in claimed:
            continue
        found = [
            name for name in (*LOCKFILES, *FOREIGN_LOCKFILES) if file_in(directory, name) in tracked
        ]
        if not found:
            continue
        manifest = read_json(read, file_in(directory, "package.json"))
        declared = manifest.get("packageManager") if isinstance(manifest, dict) else None
        declared = declared if isinstance(declared, str) else None
        lockfile = found[0]
        if lockfile in LOCKFILES:
            manager = manager_for(lockfile, declared, partial(read, file_in(directory, lockfile)))
            patterns = MANAGERS[manager].workspace_patterns(
                manifest,
                lambda name: read(file_in(directory, name)),  # noqa: B023 - used now
            )
        else:
            manager, patterns = FOREIGN_LOCKFILES[lockfile], ()
        members = match_members(directory, [_normalize(p) for p in patterns], manifest_dirs)
        claimed.update(members)
        projects.append(
            Project(
                directory=directory,
                manager=manager,
                lockfile=file_in(directory, lockfile),
                members=members,
                package_manager=declared,
                other_lockfiles=tuple(file_in(directory, name) for name in found[1:]),
            )
        )
    for directory in manifest_dirs:
        if directory not in claimed and not any(p.directory == directory for p in projects):
            orphans.append((directory, "has a package.json but no lockfile"))
    return Discovery(tuple(projects), tuple(orphans))
