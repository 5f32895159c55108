"""Find every Node.js project in a repository, like Renovate's npm manager does.

A project is a directory with a package.json and a lockfile: the root, or an independent
sub-directory (`web/`, `server/`) with its own.  Its workspace members (the root package.json's
`workspaces` globs, npm and Yarn style) share its lockfile.  `node_modules/` is never looked
into; the repository config's `directories:` (gitignore-style patterns, `!` to exclude) narrows
the search.  Pure: the caller passes the tracked paths and a reader.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from posixpath import dirname

import pathspec

from bot.managers import FOREIGN_LOCKFILES, LOCKFILES
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


def workspace_patterns(manifest: object) -> tuple[str, ...]:
    """The `workspaces` globs of a parsed package.json (array or `{packages: [...]}`)."""
    if not isinstance(manifest, dict):
        return ()
    workspaces = manifest.get("workspaces")
    if isinstance(workspaces, dict):
        workspaces = workspaces.get("packages")
    if not isinstance(workspaces, list):
        return ()
    return tuple(_normalize(item) for item in workspaces if isinstance(item, str) and item.strip())


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


def _read_manifest(read: Reader, path: str) -> object:
    try:
        text = read(path)
        return json.loads(text) if text is not None else None
    except (ValueError, RecursionError):
        return None


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
        manifest = _read_manifest(read, file_in(directory, "package.json"))
        declared = manifest.get("packageManager") if isinstance(manifest, dict) else None
        members = match_members(directory, workspace_patterns(manifest), manifest_dirs)
        claimed.update(members)
        lockfile = found[0]
        projects.append(
            Project(
                directory=directory,
                manager=LOCKFILES.get(lockfile) or FOREIGN_LOCKFILES[lockfile],
                lockfile=file_in(directory, lockfile),
                members=members,
                package_manager=declared if isinstance(declared, str) else None,
                other_lockfiles=tuple(file_in(directory, name) for name in found[1:]),
            )
        )
    for directory in manifest_dirs:
        if directory not in claimed and not any(p.directory == directory for p in projects):
            orphans.append((directory, "has a package.json but no lockfile"))
    return Discovery(tuple(projects), tuple(orphans))
