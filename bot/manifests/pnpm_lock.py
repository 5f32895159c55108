"""pnpm-lock.yaml (lockfileVersion 6.x and 9.0), read into a `LockedTree`.

v9 keeps each package's metadata (`resolution.integrity`, `os`/`cpu`/`libc`) under `packages:`
keyed `name@version`, and each installed copy with its dependencies under `snapshots:` keyed
`name@version(peer@x)…`; v6 keeps both in `packages:` keyed `/name@version(…)`.  Importers are
the project root (`.`) and its workspace directories (v6 single-project locks list the root's
dependencies at the top level).  A dependency's locked value is a version (`0.33.5`, with peer
suffixes), an alias (`string-width@4.2.3`, `/string-width@4.2.3` in v6) or a local link
(`link:../lib`, which resolves to no package).  Package keys here are the v9 form, so a v6 and a
v9 lock of the same tree name their packages alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.errors import ManifestError
from bot.manifests.locked import ROOT_IMPORTER, Edge, LockedPackage, LockedTree
from bot.manifests.yaml_document import load_yaml

_EDGE_FIELDS = ("dependencies", "optionalDependencies", "devDependencies")
_LOCAL = ("link:", "file:", "workspace:")
_PNPM_FIX = "regenerate it with pnpm install and commit it"


def split_key(key: str) -> tuple[str, str]:
    """(name, version) of a package key: `@img/sharp-linux-x64@0.33.5`, `next@15.0.0(react@19.0.0)`
    → `next`, `15.0.0`."""
    base = key.lstrip("/")
    cut = base.find("(")
    if cut > 0:
        base = base[:cut]
    at = base.find("@", 1)
    if at < 0:
        raise ValueError(key)
    return base[:at], base[at + 1 :]


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    return (value,) if isinstance(value, str) else ()


def _target(name: str, locked: object, keys: frozenset[str]) -> str | None:
    """The package key a dependency's locked value names (None: a local link, or missing)."""
    if not isinstance(locked, str | int | float) or str(locked).startswith(_LOCAL):
        return None
    value = str(locked).lstrip("/")
    for candidate in (f"{name}@{value}", value):  # a version, or an alias `other@1.2.3`
        if candidate in keys:
            return candidate
    return None


def _importers(data: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    importers = data.get("importers")
    if isinstance(importers, dict):
        return {str(path): entry for path, entry in importers.items() if isinstance(entry, dict)}
    return {ROOT_IMPORTER: data}


def _dependencies(entry: Mapping[str, Any], *, importer: bool) -> list[tuple[str, str, object]]:
    """(name, spec, locked value) of one importer's or snapshot's dependencies."""
    found = []
    for field_name in _EDGE_FIELDS:
        section = entry.get(field_name)
        if not isinstance(section, dict):
            continue
        for name, value in section.items():
            if importer and isinstance(value, dict):  # {specifier, version}
                spec, locked = str(value.get("specifier", "")), value.get("version")
            else:  # a snapshot's dependency: the locked value alone
                spec, locked = str(value), value
            found.append((str(name), spec, locked))
    return found


def parse_pnpm_lock(text: str, *, source: str = "pnpm-lock.yaml") -> LockedTree:
    """Parse a v6 or v9 pnpm lockfile; older or malformed files are `ManifestError`s naming
    `source`."""
    data = load_yaml(text, source=source)
    if not isinstance(data, dict):
        raise ManifestError(f"{source} must hold a YAML mapping; {_PNPM_FIX}")
    version = str(data.get("lockfileVersion", ""))
    major = version.split(".", 1)[0]
    if major not in ("6", "9"):
        raise ManifestError(
            f"{source} has lockfileVersion {version or 'none'!r}; rotation-bot reads v6 (pnpm 8) "
            "and v9 (pnpm 9 and 10): regenerate it with a current pnpm"
        )
    metadata = data.get("packages") or {}
    snapshots = data.get("snapshots") if major == "9" else metadata
    if not isinstance(metadata, dict) or not isinstance(snapshots, dict):
        raise ManifestError(f"{source}: packages and snapshots must be mappings; {_PNPM_FIX}")
    packages: list[LockedPackage] = []
    for raw_key in snapshots:
        key = str(raw_key).lstrip("/")
        try:
            name, locked_version = split_key(key)
        except ValueError:
            raise ManifestError(
                f"{source}: {raw_key!r} is not a package key; {_PNPM_FIX}"
            ) from None
        base = key.split("(", 1)[0]
        info = metadata.get(base if major == "9" else raw_key)
        info = info if isinstance(info, dict) else {}
        resolution = info.get("resolution")
        integrity = resolution.get("integrity") if isinstance(resolution, dict) else None
        packages.append(
            LockedPackage(
                name=str(info.get("name") or name),
                version=str(info.get("version") or locked_version),
                key=key,
                integrity=integrity if isinstance(integrity, str) else None,
                os=_strings(info.get("os")),
                cpu=_strings(info.get("cpu")),
                libc=_strings(info.get("libc")),
            )
        )
    keys = frozenset(package.key for package in packages)
    edges: list[Edge] = []
    importers = _importers(data)
    for path, entry in importers.items():
        holder = ROOT_IMPORTER if path in ("", ".") else path
        for name, spec, locked in _dependencies(entry, importer=True):
            edges.append(Edge(holder, name, spec, _target(name, locked, keys)))
    for raw_key, snapshot in snapshots.items():
        if not isinstance(snapshot, dict):
            continue
        holder = str(raw_key).lstrip("/")
        for name, spec, locked in _dependencies(snapshot, importer=False):
            if name and spec:
                edges.append(Edge(holder, name, spec, _target(name, locked, keys)))
    return LockedTree(
        source=source,
        packages=tuple(packages),
        edges=tuple(edges),
        importers=tuple(ROOT_IMPORTER if path in ("", ".") else path for path in importers),
    )
