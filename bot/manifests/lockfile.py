"""package-lock.json / npm-shrinkwrap.json (lockfileVersion 2 and 3), read into a `LockedTree`.

The bot never edits a lockfile itself: the package manager regenerates it and this module
re-reads the result.  Dependency edges are resolved the way Node resolves them: from the
holder's own `node_modules` up through its ancestors to the project root.
"""

from __future__ import annotations

import json
from typing import Any

from bot.errors import ManifestError
from bot.manifests.locked import ROOT_IMPORTER, Edge, LockedPackage, LockedTree

_EDGE_FIELDS = ("dependencies", "optionalDependencies", "peerDependencies", "devDependencies")


def _name_of(path: str) -> str:
    return path.rsplit("node_modules/", 1)[-1]


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return (value,) if isinstance(value, str) else ()


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _importer(path: str) -> str:
    return ROOT_IMPORTER if path == "" else path


def _resolve(keys: frozenset[str], holder: str, name: str) -> str | None:
    """Node's lookup: `<holder>/node_modules/<name>`, then each ancestor's, then the root's."""
    base = holder
    while True:
        candidate = f"{base}/node_modules/{name}" if base else f"node_modules/{name}"
        if candidate in keys:
            return candidate
        if not base:
            return None
        cut = base.rfind("/node_modules/")
        base = base[:cut] if cut >= 0 else ""


def parse_package_lock(text: str, *, source: str = "package-lock.json") -> LockedTree:
    """Parse a v2/v3 lockfile; v1 and malformed files are `ManifestError`s naming `source`."""
    try:
        data: Any = json.loads(text)
    except (ValueError, RecursionError) as error:
        raise ManifestError(
            f"{source} is not valid JSON ({error}); regenerate it with npm install"
        ) from error
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a JSON object")
    version = data.get("lockfileVersion")
    entries = data.get("packages")
    if version not in (2, 3) or not isinstance(entries, dict):
        raise ManifestError(
            f"{source} has lockfileVersion {version!r}; rotation-bot needs v2 or v3 "
            "(regenerate it with npm 7 or newer)"
        )
    importers = [ROOT_IMPORTER]
    packages: list[LockedPackage] = []
    records_resolved = False
    for path, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("link"):
            continue
        if "node_modules/" not in path:
            if path:
                importers.append(path)
            continue
        records_resolved = records_resolved or bool(entry.get("resolved"))
        packages.append(
            LockedPackage(
                name=_text(entry.get("name")) or _name_of(path),
                version=_text(entry.get("version")) or "",
                key=path,
                integrity=_text(entry.get("integrity")),
                os=_strings(entry.get("os")),
                cpu=_strings(entry.get("cpu")),
                libc=_strings(entry.get("libc")),
            )
        )
    keys = frozenset(package.key for package in packages)
    edges: list[Edge] = []
    for path, entry in entries.items():
        if not isinstance(entry, dict) or entry.get("link"):
            continue
        holder = path if "node_modules/" in path else _importer(path)
        for field_name in _EDGE_FIELDS:
            section = entry.get(field_name)
            if field_name == "devDependencies" and "node_modules/" in path:
                continue
            if not isinstance(section, dict):
                continue
            for name, spec in section.items():
                if isinstance(spec, str):
                    edges.append(Edge(holder, name, spec, _resolve(keys, path, name)))
    return LockedTree(
        source=source,
        packages=tuple(packages),
        edges=tuple(edges),
        importers=tuple(importers),
        records_resolved=records_resolved,
    )
