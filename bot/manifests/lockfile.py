"""package-lock.json (lockfileVersion 2 and 3): the entries the bot checks, read-only.

The bot never edits a lockfile itself: npm regenerates it, and this module re-reads the result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from bot.errors import ManifestError


@dataclass(frozen=True)
class LockEntry:
    """One `packages` entry: where it is installed and what npm recorded about it."""

    path: str
    name: str
    version: str | None
    integrity: str | None
    resolved: str | None
    os: tuple[str, ...]
    cpu: tuple[str, ...]
    libc: tuple[str, ...]
    optional: bool


def _name_of(path: str) -> str:
    return path.rsplit("node_modules/", 1)[-1]


def _strings(value: object) -> tuple[str, ...]:
    return tuple(str(item) for item in value) if isinstance(value, list) else ()


@dataclass(frozen=True)
class Lockfile:
    """A parsed lockfile with lookups by package name."""

    version: int
    entries: tuple[LockEntry, ...]
    source: str = "package-lock.json"

    @classmethod
    def parse(cls, text: str, *, source: str = "package-lock.json") -> Lockfile:
        """Parse a v2/v3 lockfile; v1 and malformed files are `ManifestError`s naming `source`."""
        try:
            data: Any = json.loads(text)
        except ValueError as error:
            raise ManifestError(
                f"{source} is not valid JSON ({error}); regenerate it with npm install"
            ) from error
        if not isinstance(data, dict):
            raise ManifestError(f"{source} must hold a JSON object")
        version = data.get("lockfileVersion")
        packages = data.get("packages")
        if version not in (2, 3) or not isinstance(packages, dict):
            raise ManifestError(
                f"{source} has lockfileVersion {version!r}; rotation-bot needs v2 or v3 "
                "(regenerate it with npm 7 or newer)"
            )
        entries = tuple(
            LockEntry(
                path=path,
                name=str(entry.get("name") or _name_of(path)),
                version=entry.get("version") if isinstance(entry.get("version"), str) else None,
                integrity=entry.get("integrity")
                if isinstance(entry.get("integrity"), str)
                else None,
                resolved=entry.get("resolved") if isinstance(entry.get("resolved"), str) else None,
                os=_strings(entry.get("os")),
                cpu=_strings(entry.get("cpu")),
                libc=_strings(entry.get("libc")),
                optional=bool(entry.get("optional")),
            )
            for path, entry in packages.items()
            if path and isinstance(entry, dict) and not entry.get("link")
        )
        return cls(int(version), entries, source)

    def find(self, name: str) -> tuple[LockEntry, ...]:
        """Every installed copy of `name` (top-level and nested)."""
        return tuple(entry for entry in self.entries if entry.path.endswith(f"node_modules/{name}"))

    def top_level(self, name: str) -> LockEntry | None:
        """The hoisted `node_modules/<name>` entry, if any."""
        return next((entry for entry in self.entries if entry.path == f"node_modules/{name}"), None)

    @property
    def records_resolved(self) -> bool:
        """Whether npm wrote `resolved` URLs (so regeneration keeps doing so)."""
        return any(entry.resolved for entry in self.entries)

    def integrities(self, names: set[str]) -> Mapping[str, str | None]:
        """Top-level integrity of each name (None when absent)."""
        result: dict[str, str | None] = {}
        for name in sorted(names):
            entry = self.top_level(name)
            result[name] = entry.integrity if entry else None
        return result
