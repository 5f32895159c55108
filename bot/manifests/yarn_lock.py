"""yarn.lock of Yarn 1 (classic, `# yarn lockfile v1`) and of Yarn Berry (2 to 4, YAML with
`__metadata`), read into a `LockedTree`.

Both key each entry by the descriptors it satisfies (`sharp@0.33.4, sharp@^0.33.4:`;
`"sharp@npm:^0.33.4, sharp@npm:^0.33.6":`) and list its dependencies as name → range, so an edge
resolves by looking its descriptor up.  They differ in what an entry records:

- Yarn 1: `version`, `resolved`, `integrity` (the npm tarball's sha512, comparable with the
  registry), no os/cpu/libc, and no entries for the workspaces (their edges come from the
  manifests the caller passes, when it has them).
- Berry: `version`, `resolution`, `conditions: os=linux & cpu=x64 & libc=glibc`, and a `checksum`
  that is Yarn's own archive checksum (`10c0/…`), NOT the npm integrity; `--mode=update-lockfile`
  writes none for conditional packages.  Workspaces are entries too (`web@workspace:.`).

Package keys are `name@version` (Yarn 1) and the `resolution` (Berry).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import nodesemver

from bot.errors import ManifestError
from bot.manifests.locked import ROOT_IMPORTER, Edge, LockedPackage, LockedTree
from bot.manifests.yaml_document import load_yaml

CLASSIC_HEADER = "# yarn lockfile v1"
_EDGE_FIELDS = ("dependencies", "optionalDependencies")
_MANIFEST_FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
_DESCRIPTORS = re.compile(r'"(?:[^"\\]|\\.)*"|[^,]+')
_PAIR = re.compile(r'^("(?:[^"\\]|\\.)*"|\S+)\s+(.*)$')
_CONDITION = re.compile(r"\b(os|cpu|libc)=([A-Za-z0-9_-]+)")
# what to do about a Yarn 1 lockfile rotation-bot cannot read (Yarn 1 refuses most of them too)
_YARN1_FIX = (
    "regenerate it with yarn install (remove it first if Yarn cannot read it) and commit it"
)


def is_berry_lock(text: str) -> bool:
    """Whether a yarn.lock is Berry's YAML (it has `__metadata:`) rather than Yarn 1's format."""
    return re.search(r"^__metadata:", text, re.MULTILINE) is not None


def split_descriptor(descriptor: str) -> tuple[str, str]:
    """(name, range) of `sharp@^0.33.4`, `@img/sharp-linux-x64@npm:0.33.5`."""
    at = descriptor.find("@", 1)
    if at < 0:
        return descriptor, ""
    return descriptor[:at], descriptor[at + 1 :]


def _unquote(token: str) -> str:
    token = token.strip()
    if token.startswith('"'):
        try:
            value = json.loads(token)
        except ValueError:
            return token.strip('"')
        return str(value)
    return token


def _descriptors(header: str) -> list[str]:
    return [_unquote(part) for part in _DESCRIPTORS.findall(header) if part.strip()]


def _classic_entries(text: str, source: str) -> list[tuple[list[str], dict[str, Any]]]:
    """(descriptors, fields) of every entry of a Yarn 1 lockfile (its indentation syntax)."""
    entries: list[tuple[list[str], dict[str, Any]]] = []
    stack: list[tuple[int, dict[str, Any]]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(raw) - len(raw.lstrip(" "))
        if indent == 0:
            if not stripped.endswith(":"):
                raise ManifestError(
                    f"{source}:{number}: expected an entry header ending in ':'; {_YARN1_FIX}"
                )
            fields: dict[str, Any] = {}
            entries.append((_descriptors(stripped[:-1]), fields))
            stack = [(0, fields)]
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if not stack:
            raise ManifestError(f"{source}:{number}: indented line outside an entry; {_YARN1_FIX}")
        parent = stack[-1][1]
        if stripped.endswith(":"):
            child: dict[str, Any] = {}
            parent[_unquote(stripped[:-1])] = child
            stack.append((indent, child))
            continue
        match = _PAIR.match(stripped)
        if match is None:
            raise ManifestError(f"{source}:{number}: cannot read {stripped[:60]!r}; {_YARN1_FIX}")
        parent[_unquote(match.group(1))] = _unquote(match.group(2))
    return entries


def _real_name(name: str, spec: str) -> str:
    """The package an alias descriptor (`x@npm:real@^1`) installs; `name` otherwise."""
    if spec.startswith("npm:") and "@" in spec[5:]:
        return split_descriptor(spec[4:])[0]
    return name


def _pick(
    name: str, spec: str, by_descriptor: Mapping[str, str], copies: list[LockedPackage]
) -> str | None:
    """The key a dependency resolves to: its descriptor, else the only copy of the package, else
    the newest copy the range accepts (a `resolutions` entry rewrites ranges)."""
    key = by_descriptor.get(f"{name}@{spec}")
    if key is not None:
        return key
    if len(copies) == 1:
        return copies[0].key
    bare = spec.removeprefix("npm:")
    versions = [copy.version for copy in copies]
    try:
        best = nodesemver.max_satisfying(versions, bare, loose=True)
    except (ValueError, TypeError):
        best = None
    return next((copy.key for copy in copies if copy.version == best), None)


def _edges(
    holder: str,
    dependencies: Mapping[str, Any],
    by_descriptor: Mapping[str, str],
    by_name: Mapping[str, list[LockedPackage]],
) -> list[Edge]:
    return [
        Edge(holder, name, str(spec), _pick(name, str(spec), by_descriptor, by_name.get(name, [])))
        for name, spec in dependencies.items()
        if isinstance(spec, str | int | float)
    ]


def parse_classic_lock(
    text: str,
    *,
    source: str = "yarn.lock",
    manifests: Mapping[str, Mapping[str, Any]] | None = None,
) -> LockedTree:
    """Parse a Yarn 1 lockfile; `manifests` (importer directory → parsed package.json) add the
    workspaces' own edges, which the lockfile does not record."""
    if is_berry_lock(text):
        raise ManifestError(f"{source} is a Yarn Berry lockfile, not Yarn 1's")
    entries = _classic_entries(text, source)
    packages: dict[str, LockedPackage] = {}
    by_descriptor: dict[str, str] = {}
    for descriptors, fields in entries:
        version = fields.get("version")
        if not descriptors or not isinstance(version, str):
            raise ManifestError(
                f"{source}: the entry {', '.join(descriptors)!r} has no version; {_YARN1_FIX}"
            )
        name, spec = split_descriptor(descriptors[0])
        key = f"{_real_name(name, spec)}@{version}"
        integrity = fields.get("integrity")
        packages.setdefault(
            key,
            LockedPackage(
                name=_real_name(name, spec),
                version=version,
                key=key,
                integrity=integrity if isinstance(integrity, str) else None,
            ),
        )
        for descriptor in descriptors:
            by_descriptor[descriptor] = key
    by_name: dict[str, list[LockedPackage]] = {}
    for package in packages.values():
        by_name.setdefault(package.name, []).append(package)
    edges: list[Edge] = []
    seen: set[str] = set()
    for descriptors, fields in entries:
        key = by_descriptor[descriptors[0]]
        if key in seen:
            continue
        seen.add(key)
        for field_name in _EDGE_FIELDS:
            section = fields.get(field_name)
            if isinstance(section, dict):
                edges.extend(_edges(key, section, by_descriptor, by_name))
    importers = [ROOT_IMPORTER]
    for directory, manifest in (manifests or {}).items():
        holder = directory or ROOT_IMPORTER
        if holder not in importers:
            importers.append(holder)
        for field_name in _MANIFEST_FIELDS:
            section = manifest.get(field_name)
            if isinstance(section, dict):
                edges.extend(_edges(holder, section, by_descriptor, by_name))
    return LockedTree(
        source=source,
        packages=tuple(packages.values()),
        edges=tuple(edges),
        importers=tuple(importers),
        records_platforms=False,
    )


def _conditions(value: object) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    if isinstance(value, str):
        for field_name, item in _CONDITION.findall(value):
            found.setdefault(field_name, []).append(item)
    return {field_name: tuple(items) for field_name, items in found.items()}


def parse_berry_lock(text: str, *, source: str = "yarn.lock") -> LockedTree:
    """Parse a Yarn Berry (2 to 4) lockfile; a Yarn 1 or malformed one is a `ManifestError`."""
    data = load_yaml(text, source=source) if is_berry_lock(text) else None
    if not isinstance(data, dict) or not isinstance(data.get("__metadata"), dict):
        raise ManifestError(
            f"{source} is not a Yarn Berry lockfile (no __metadata); regenerate it with "
            "yarn install"
        )
    packages: list[LockedPackage] = []
    by_descriptor: dict[str, str] = {}
    workspaces: dict[str, str] = {}
    fields_of: dict[str, Mapping[str, Any]] = {}
    for header, fields in data.items():
        if header == "__metadata":
            continue
        if not isinstance(fields, dict) or not isinstance(fields.get("resolution"), str):
            raise ManifestError(
                f"{source}: the entry {str(header)[:80]!r} has no resolution; regenerate it with "
                "yarn install and commit it"
            )
        resolution: str = fields["resolution"]
        name, reference = split_descriptor(resolution)
        for descriptor in _descriptors(str(header)):
            by_descriptor[descriptor] = resolution
        fields_of[resolution] = fields
        if reference.startswith("workspace:"):
            directory = reference.removeprefix("workspace:")
            workspaces[resolution] = ROOT_IMPORTER if directory in ("", ".") else directory
            continue
        conditions = _conditions(fields.get("conditions"))
        checksum = fields.get("checksum")
        packages.append(
            LockedPackage(
                name=name,
                version=str(fields.get("version", "")),
                key=resolution,
                os=conditions.get("os", ()),
                cpu=conditions.get("cpu", ()),
                libc=conditions.get("libc", ()),
                checksum=str(checksum) if checksum is not None else None,
            )
        )
    by_name: dict[str, list[LockedPackage]] = {}
    for package in packages:
        by_name.setdefault(package.name, []).append(package)
    edges: list[Edge] = []
    for resolution, fields in fields_of.items():
        holder = workspaces.get(resolution, resolution)
        section = fields.get("dependencies")
        if isinstance(section, dict):
            edges.extend(_edges(holder, section, by_descriptor, by_name))
    importers = sorted(set(workspaces.values()), key=lambda item: (item != ROOT_IMPORTER, item))
    return LockedTree(
        source=source,
        packages=tuple(packages),
        edges=tuple(edges),
        importers=tuple(importers) or (ROOT_IMPORTER,),
    )


def berry_lock_version(text: str) -> int | None:
    """`__metadata.version` of a Berry lockfile (6: Yarn 3; 8 and later: Yarn 4)."""
    match = re.search(r"^__metadata:\n(?:[ ].*\n)*?[ ]+version: (\d+)", text, re.MULTILINE)
    return int(match.group(1)) if match else None
