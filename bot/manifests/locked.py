"""Locked packages: what any lockfile (npm, pnpm, Yarn) says is installed, and who needs it.

Pure data with lookups; each package manager's parser builds a `LockedTree`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

ROOT_IMPORTER = "."


@dataclass(frozen=True)
class LockedPackage:
    """One installed copy of a package, as the lockfile records it."""

    name: str
    version: str
    key: str
    # the npm tarball's sha512 SRI as the lockfile records it (None: the lockfile records none,
    # e.g. Yarn Berry, whose `checksum` is its own archive checksum)
    integrity: str | None = None
    os: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()
    libc: tuple[str, ...] = ()
    # the package manager's own checksum of its archive (Yarn Berry's `checksum: 10c0/…`): not
    # comparable with the registry, but a change of it is a change of the entry
    checksum: str | None = None


@dataclass(frozen=True)
class Edge:
    """`holder` depends on `name` with `spec`, which the lockfile resolves to `target` (a package
    key, or None when it is not installed, e.g. another platform's optional package)."""

    holder: str
    name: str
    spec: str
    target: str | None


@dataclass(frozen=True)
class LockedTree:
    """A parsed lockfile: every installed package and who depends on it.

    Holders and targets are package keys, or importer directories (`ROOT_IMPORTER` for the
    project root, `packages/web` for a workspace) for the project's own manifests.
    """

    source: str
    packages: tuple[LockedPackage, ...]
    edges: tuple[Edge, ...] = ()
    importers: tuple[str, ...] = (ROOT_IMPORTER,)
    records_resolved: bool = True
    # whether entries carry os/cpu/libc (Yarn 1's yarn.lock does not)
    records_platforms: bool = True
    _by_key: Mapping[str, LockedPackage] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_key", {package.key: package for package in self.packages})

    def package(self, key: str) -> LockedPackage | None:
        """The package at `key`, if the lockfile has it."""
        return self._by_key.get(key)

    def find(self, name: str) -> tuple[LockedPackage, ...]:
        """Every installed copy of `name`."""
        return tuple(package for package in self.packages if package.name == name)

    def dependents(self, key: str) -> tuple[Edge, ...]:
        """The edges that resolve to the package at `key`."""
        return tuple(edge for edge in self.edges if edge.target == key)

    def closure(self, keys: Sequence[str]) -> frozenset[str]:
        """`keys` and every package they depend on, transitively."""
        seen: set[str] = set()
        pending = list(keys)
        outgoing: dict[str, list[str]] = {}
        for edge in self.edges:
            if edge.target is not None:
                outgoing.setdefault(edge.holder, []).append(edge.target)
        while pending:
            key = pending.pop()
            if key in seen:
                continue
            seen.add(key)
            pending.extend(outgoing.get(key, ()))
        return frozenset(seen)

    def reachable(
        self, holders: Iterable[str], accept: Callable[[str], bool]
    ) -> dict[str, LockedPackage]:
        """name → the entry each accepted name resolves to from `holders`, following the
        accepted packages' own dependencies (first found wins, breadth first)."""
        found: dict[str, LockedPackage] = {}
        outgoing: dict[str, list[Edge]] = {}
        for edge in self.edges:
            outgoing.setdefault(edge.holder, []).append(edge)
        pending = list(holders)
        seen: set[str] = set()
        while pending:
            holder = pending.pop(0)
            if holder in seen:
                continue
            seen.add(holder)
            for edge in outgoing.get(holder, ()):
                package = self.package(edge.target) if edge.target else None
                if package is not None and accept(edge.name) and edge.name not in found:
                    found[edge.name] = package
                    pending.append(package.key)
        return found

    def signature(self) -> dict[str, tuple[str, str | None, str | None]]:
        """key → (version, integrity, checksum), to compare two lockfiles entry by entry."""
        return {
            package.key: (package.version, package.integrity, package.checksum)
            for package in self.packages
        }
