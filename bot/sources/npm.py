"""The npm registry: settings from `.npmrc` the way npm users expect, packuments, tarballs.

Everything read from the network is validated before it leaves this module: versions are
strict semver, package names are valid, integrity values are single sha512 SRI strings,
tarball URLs use http(s).  Packuments are cached on disk with conditional requests
(`ETag` / `Last-Modified`) when the registry sends those headers.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import semver

from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable, register_secret
from bot.models import Release, strict_integrity, strict_package_name, strict_version
from bot.shell import allowed_environment
from bot.sources.http import HttpSource, host_of

log = logging.getLogger(__name__)

PUBLIC_REGISTRY = "https://registry.npmjs.org/"
TARBALL_LIMIT = 128 * 1024 * 1024
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(\?)?\}")
_CREDENTIAL_KEYS = ("_authToken", "_auth", "username", "_password")
# npm's network settings that are carried over to npm unchanged (corporate CAs and proxies).
NETWORK_KEYS = (
    "cafile",
    "ca",
    "strict-ssl",
    "proxy",
    "https-proxy",
    "noproxy",
    "fetch-timeout",
    "fetch-retries",
    "maxsockets",
)


def _normalize_registry(url: str, *, source: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{source}: registry {url!r} must be an http(s) URL")
    return url if url.endswith("/") else url + "/"


def _nerf_dart(url: str) -> str:
    """npm's credential key for a URL: `//host[:port]/path/`."""
    parsed = httpx.URL(url)
    port = f":{parsed.port}" if parsed.port else ""
    path = parsed.path if parsed.path.endswith("/") else parsed.path.rsplit("/", 1)[0] + "/"
    return f"//{parsed.host}{port}{path}"


@dataclass(frozen=True)
class NpmSettings:
    """Registry URL, scoped registries and credentials, merged from npm's config sources."""

    registry: str = PUBLIC_REGISTRY
    scoped_registries: tuple[tuple[str, str], ...] = ()
    credentials: tuple[tuple[str, str, str], ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    network: tuple[tuple[str, str], ...] = ()

    def registry_for(self, package: str) -> str:
        """The registry that serves `package` (scoped registries win)."""
        if package.startswith("@"):
            scope = package.split("/", 1)[0]
            for name, url in self.scoped_registries:
                if name == scope:
                    return url
        return self.registry

    def auth_headers(self, url: str) -> dict[str, str]:
        """`Authorization` for `url`, only when a credential's `//host/path/` prefixes it."""
        key = _nerf_dart(url)
        best: dict[str, str] = {}
        best_length = -1
        for prefix, name, value in self.credentials:
            if not key.startswith(prefix) or len(prefix) < best_length:
                continue
            if name == "_authToken":
                best, best_length = {"Authorization": f"Bearer {value}"}, len(prefix)
            elif name == "_auth":
                best, best_length = {"Authorization": f"Basic {value}"}, len(prefix)
        return best

    def userconfig(self, *, omit_resolved: bool) -> str:
        """The npmrc handed to npm: registries, credentials, scripts off, no audit."""
        lines = [
            f"registry={self.registry}",
            *(f"{scope}:registry={url}" for scope, url in self.scoped_registries),
            *(f"{prefix}:{name}={value}" for prefix, name, value in self.credentials),
            *(f"{key}={value}" for key, value in self.network),
            "ignore-scripts=true",
            "audit=false",
            "fund=false",
            "update-notifier=false",
            "progress=false",
            f"omit-lockfile-registry-resolved={'true' if omit_resolved else 'false'}",
        ]
        return "\n".join(lines) + "\n"


LOCKFILE_ONLY_INSTALL = (
    "npm",
    "install",
    "--package-lock-only",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
)


def isolated_npm_environment(
    environ: Mapping[str, str],
    settings: NpmSettings,
    *,
    userconfig: Path,
    cache: Path,
    omit_resolved: bool,
) -> dict[str, str]:
    """The environment npm runs with: the allowlisted variables, a 0600 userconfig (written once,
    outside any worktree) holding registries and credentials with scripts off, no global config,
    and the `${VAR}`s the project's .npmrc refers to."""
    if not userconfig.exists():
        descriptor = os.open(userconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(settings.userconfig(omit_resolved=omit_resolved))
    return allowed_environment(
        environ,
        {
            "NPM_CONFIG_USERCONFIG": str(userconfig),
            "NPM_CONFIG_GLOBALCONFIG": os.devnull,
            "NPM_CONFIG_CACHE": str(cache),
            "NPM_CONFIG_IGNORE_SCRIPTS": "true",
            **dict(settings.variables),
        },
    )


def _expand(value: str, environ: Mapping[str, str], source: str) -> tuple[str, list[str]]:
    used: list[str] = []

    def replace(match: re.Match[str]) -> str:
        name, optional = match.group(1), match.group(2)
        if name not in environ and not optional:
            raise ConfigError(f"{source}: ${{{name}}} is used but not set; export it and retry")
        used.append(name)
        return environ.get(name, "")

    return _VARIABLE.sub(replace, value), used


def _parse_npmrc(text: str, source: str, environ: Mapping[str, str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")) or "=" not in line:
            continue
        key, _, value = line.partition("=")
        expanded, _ = _expand(value.strip().strip('"'), environ, source)
        values[key.strip()] = expanded
    return values


def referenced_variables(text: str) -> tuple[str, ...]:
    """Names of `${VAR}` references in an npmrc, which npm itself will expand."""
    return tuple(sorted({match.group(1) for match in _VARIABLE.finditer(text)}))


def load_npm_settings(
    environ: Mapping[str, str], *, project_npmrc: str | None = None
) -> NpmSettings:
    """Merge user `.npmrc`, the project's `.npmrc` and `NPM_CONFIG_*` variables (npm's order)."""
    merged: dict[str, str] = {}
    user_path = Path(
        environ.get("NPM_CONFIG_USERCONFIG")
        or environ.get("npm_config_userconfig")
        or Path(environ.get("HOME", "~")).expanduser() / ".npmrc"
    )
    if user_path.is_file():
        merged.update(_parse_npmrc(user_path.read_text(encoding="utf-8"), str(user_path), environ))
    if project_npmrc is not None:
        merged.update(_parse_npmrc(project_npmrc, ".npmrc", environ))
    for name in ("NPM_CONFIG_REGISTRY", "npm_config_registry"):
        if environ.get(name):
            merged["registry"] = environ[name]
    registry = _normalize_registry(merged.get("registry", PUBLIC_REGISTRY), source="npm config")
    scoped = tuple(
        sorted(
            (key.split(":", 1)[0], _normalize_registry(value, source=f"npm config {key}"))
            for key, value in merged.items()
            if key.startswith("@") and key.endswith(":registry")
        )
    )
    credentials = []
    for key, value in merged.items():
        prefix, _, name = key.rpartition(":")
        if prefix.startswith("//") and name in _CREDENTIAL_KEYS and value:
            register_secret(value)
            credentials.append((prefix if prefix.endswith("/") else prefix + "/", name, value))
    variables = tuple(
        (name, environ[name])
        for name in referenced_variables(project_npmrc or "")
        if name in environ
    )
    for _, value in variables:
        register_secret(value)
    network = tuple((key, merged[key]) for key in NETWORK_KEYS if key in merged)
    return NpmSettings(registry, scoped, tuple(sorted(credentials)), variables, network)


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


class _Sha512:
    """A streaming sha512 that also counts bytes."""

    def __init__(self) -> None:
        self.digest = hashlib.sha512()
        self.size = 0

    def __call__(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)

    @property
    def integrity(self) -> str:
        return "sha512-" + base64.b64encode(self.digest.digest()).decode("ascii")


@dataclass(frozen=True)
class TarballHash:
    """The sha512 of a downloaded tarball, as an SRI string, and its size."""

    url: str
    integrity: str
    size: int


class NpmRegistry:
    """Reads packuments and tarballs from the configured npm registry (or registries)."""

    def __init__(
        self, settings: NpmSettings, http: HttpSource, *, cache_dir: Path | None = None
    ) -> None:
        self.settings = settings
        self.http = http
        self.cache_dir = cache_dir
        self._packuments: dict[str, Packument] = {}

    def packument_url(self, name: str) -> str:
        """The packument URL of `name` (scope slash encoded as npm does)."""
        strict_package_name(name, source="package name")
        return self.settings.registry_for(name) + quote(name, safe="@")

    def packument(self, name: str) -> Packument:
        """The packument of `name`, from memory, the disk cache (if still fresh) or the registry."""
        if name in self._packuments:
            return self._packuments[name]
        url = self.packument_url(name)
        headers = {"Accept": "application/json", **self.settings.auth_headers(url)}
        cached = self._cached(url)
        if cached is not None:
            if cached.get("etag"):
                headers["If-None-Match"] = cached["etag"]
            if cached.get("last_modified"):
                headers["If-Modified-Since"] = cached["last_modified"]
        body = self.http.fetch("GET", url, headers=headers)
        if body.status_code == 304 and cached is not None:
            data = cached["body"]
        elif body.status_code == 404:
            raise InvalidRemoteData(f"{host_of(url)} has no package {name}; check the registry")
        elif body.status_code in (401, 403):
            raise ServiceUnavailable(
                f"{host_of(url)} refused access to {name} (HTTP {body.status_code}); "
                "check the registry token in .npmrc"
            )
        elif body.status_code != 200:
            raise ServiceUnavailable(f"{host_of(url)} answered HTTP {body.status_code} for {name}")
        else:
            data = body.json()
            self._store(url, body.headers, data)
        if not isinstance(data, dict):
            raise InvalidRemoteData(f"{host_of(url)} returned a packument that is not an object")
        packument = Packument(name, data, host=host_of(url))
        self._packuments[name] = packument
        return packument

    def hash_tarball(self, url: str, *, limit: int = TARBALL_LIMIT) -> TarballHash:
        """Stream a tarball through sha512 (never to disk); refuse past `limit` bytes."""
        sink = _Sha512()
        body = self.http.fetch(
            "GET", url, headers=self.settings.auth_headers(url), limit=limit, sink=sink
        )
        if body.status_code != 200:
            raise ServiceUnavailable(f"{host_of(url)} answered HTTP {body.status_code} for {url}")
        return TarballHash(url=url, integrity=sink.integrity, size=sink.size)

    def _cache_path(self, url: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / (hashlib.sha256(url.encode()).hexdigest() + ".json")

    def _cached(self, url: str) -> dict[str, Any] | None:
        path = self._cache_path(url)
        if path is None or not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None
        return data if isinstance(data, dict) else None

    def _store(self, url: str, headers: httpx.Headers, data: Any) -> None:
        path = self._cache_path(url)
        if path is None or not (headers.get("etag") or headers.get("last-modified")):
            return
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "etag": headers.get("etag"),
            "last_modified": headers.get("last-modified"),
            "body": data,
        }
        temporary = path.with_suffix(f".{os.getpid()}.tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(path)
