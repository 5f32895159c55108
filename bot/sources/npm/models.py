"""npm registry documents, validated: packuments, version manifests, dist, signatures.

Pure: nothing here does I/O.  Everything read from the network is validated before it leaves
this module: versions are strict semver, package names are valid, integrity values are single
sha512 SRI strings, tarball URLs use http(s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import semver

from bot.errors import InvalidRemoteData
from bot.models import Release, strict_integrity, strict_package_name, strict_version


@dataclass(frozen=True)
class Signature:
    """One `dist.signatures` entry: the key id and the base64 DER ECDSA signature."""

    keyid: str
    sig: str


@dataclass(frozen=True)
class Dist:
    """A version's `dist`: where the tarball is and what it must hash to."""

    tarball: str
    integrity: str
    signatures: tuple[Signature, ...] = ()
    attestations_url: str | None = None
    provenance_predicate: str | None = None
    unpacked_size: int | None = None


@dataclass(frozen=True)
class PackageVersion:
    """One version's manifest, validated."""

    name: str
    version: str
    dist: Dist
    dependencies: Mapping[str, str] = field(default_factory=dict)
    optional_dependencies: Mapping[str, str] = field(default_factory=dict)
    install_scripts: Mapping[str, str] = field(default_factory=dict)
    os: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()
    libc: tuple[str, ...] = ()
    publisher: str | None = None
    published_at: datetime | None = None
    deprecated: str | None = None


def _strings(value: object) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(item) for item in value)
    if isinstance(value, str):
        return (value,)
    return ()


def _mapping(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    return {str(key): str(item) for key, item in value.items()}


def _timestamp(value: object) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


class Packument:
    """A package document from the registry, validated on access."""

    def __init__(self, name: str, data: Mapping[str, Any], *, host: str) -> None:
        self.name = name
        self.host = host
        versions = data.get("versions")
        if not isinstance(versions, dict):
            raise InvalidRemoteData(f"{host} returned a packument for {name} without versions")
        for version in versions:
            strict_version(version, source=f"{host} ({name})")
        self._versions: dict[str, Any] = versions
        times = data.get("time")
        self._times: dict[str, Any] = times if isinstance(times, dict) else {}

    @property
    def versions(self) -> tuple[str, ...]:
        """Every published version (validated strict semver)."""
        return tuple(self._versions)

    def unpublished(self) -> tuple[str, ...]:
        """Versions the `time` map records but `versions` no longer holds (unpublished)."""
        return tuple(
            version
            for version in self._times
            if version not in ("created", "modified") and version not in self._versions
        )

    def releases(self) -> tuple[Release, ...]:
        """Every version as a `Release`, oldest first by semver."""
        ordered = sorted(self._versions, key=semver.Version.parse)
        return tuple(
            Release(
                name=self.name,
                version=version,
                published_at=_timestamp(self._times.get(version)),
                deprecated=_deprecation(self._versions[version]),
            )
            for version in ordered
        )

    def manifest(self, version: str) -> PackageVersion:
        """The validated manifest of one version; `InvalidRemoteData` if it is unusable."""
        source = f"{self.host} ({self.name}@{version})"
        raw = self._versions.get(version)
        if not isinstance(raw, dict):
            raise InvalidRemoteData(f"{source}: version {version} is not published")
        if raw.get("version", version) != version or raw.get("name", self.name) != self.name:
            raise InvalidRemoteData(f"{source}: manifest names another package or version")
        dist = raw.get("dist")
        if not isinstance(dist, dict):
            raise InvalidRemoteData(f"{source}: manifest has no dist")
        tarball = dist.get("tarball")
        if not isinstance(tarball, str) or not tarball.startswith(("https://", "http://")):
            raise InvalidRemoteData(f"{source}: dist.tarball {tarball!r} is not an http(s) URL")
        attestations = dist.get("attestations")
        attestations_url = None
        predicate = None
        if isinstance(attestations, dict):
            attestations_url = attestations.get("url")
            provenance = attestations.get("provenance")
            if isinstance(provenance, dict):
                predicate = provenance.get("predicateType")
        optional = _mapping(raw.get("optionalDependencies"))
        for name, spec in optional.items():
            strict_package_name(name, source=source)
            strict_version(spec, source=f"{source} optionalDependencies[{name}]")
        scripts = _mapping(raw.get("scripts"))
        user = raw.get("_npmUser")
        return PackageVersion(
            name=self.name,
            version=version,
            dist=Dist(
                tarball=tarball,
                integrity=strict_integrity(dist.get("integrity"), source=source),
                signatures=tuple(
                    Signature(str(item.get("keyid")), str(item.get("sig")))
                    for item in dist.get("signatures") or []
                    if isinstance(item, dict)
                ),
                attestations_url=attestations_url if isinstance(attestations_url, str) else None,
                provenance_predicate=predicate if isinstance(predicate, str) else None,
                unpacked_size=dist.get("unpackedSize")
                if isinstance(dist.get("unpackedSize"), int)
                else None,
            ),
            dependencies=_mapping(raw.get("dependencies")),
            optional_dependencies=optional,
            install_scripts={
                key: value
                for key, value in scripts.items()
                if key in ("preinstall", "install", "postinstall")
            },
            os=_strings(raw.get("os")),
            cpu=_strings(raw.get("cpu")),
            libc=_strings(raw.get("libc")),
            publisher=str(user.get("name")) if isinstance(user, dict) else None,
            published_at=_timestamp(self._times.get(version)),
            deprecated=_deprecation(raw),
        )


def _deprecation(raw: object) -> str | None:
    if isinstance(raw, dict) and isinstance(raw.get("deprecated"), str) and raw["deprecated"]:
        return str(raw["deprecated"])
    return None
