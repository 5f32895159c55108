"""The npm registry client: packuments (cached with conditional requests when the registry sends
`ETag` / `Last-Modified`: on disk by default, or in a cache the whole fleet shares) and tarballs
streamed through sha512."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

from bot.errors import InvalidRemoteData, ServiceUnavailable
from bot.models import strict_package_name
from bot.sources.http import HttpSource, host_of
from bot.sources.npm.models import Packument
from bot.sources.npm.settings import NpmSettings
from bot.unchanged import body_digest, observe

TARBALL_LIMIT = 128 * 1024 * 1024


class _Sha512:
    """A streaming sha512 that also counts bytes (and keeps them when asked to)."""

    def __init__(self, *, keep: bool = False) -> None:
        self.digest = hashlib.sha512()
        self.size = 0
        self.data: bytearray | None = bytearray() if keep else None

    def __call__(self, chunk: bytes) -> None:
        self.digest.update(chunk)
        self.size += len(chunk)
        if self.data is not None:
            self.data.extend(chunk)

    @property
    def integrity(self) -> str:
        return "sha512-" + base64.b64encode(self.digest.digest()).decode("ascii")


@dataclass(frozen=True)
class TarballHash:
    """The sha512 of a downloaded tarball, as an SRI string, and its size."""

    url: str
    integrity: str
    size: int


@dataclass(frozen=True)
class CachedPackument:
    """A packument as fetched, with the validators for the next conditional request."""

    body: Any
    etag: str | None = None
    last_modified: str | None = None


# Given what the cache holds for a URL (or None), fetch it from the registry (conditionally).
PackumentFetch = Callable[[CachedPackument | None], CachedPackument]


class PackumentCache(Protocol):
    """Where packuments are kept between requests (a directory, or a table the fleet shares)."""

    def get(self, key: str, fetch: PackumentFetch) -> CachedPackument:
        """The packument under `key` (its URL and whose credentials): what the cache holds if
        still fresh, else `fetch(held)`'s answer, kept for next time."""
        ...

    def current(self, key: str) -> str | None:
        """The validator (`body_digest`) of the packument under `key` if the cache holds it
        fresh, without asking the registry; None when it would have to ask."""
        ...


def unexpected_answer(url: str, what: str, status: int) -> ServiceUnavailable:
    """The error for a registry's answer other than 200 to a request for `what` at `url`: a
    refusal (401, 403) points at the credentials, anything else is passing."""
    if status in (401, 403):
        return ServiceUnavailable(
            f"{host_of(url)} refused access to {what} (HTTP {status}); check the registry token "
            "in the operator's npm settings (NPM_CONFIG_USERCONFIG)"
        )
    return ServiceUnavailable(f"{host_of(url)} answered HTTP {status} for {what}; try again later")


class DiskPackumentCache:
    """Packuments on disk, one file per URL; asked again (conditionally) every time."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str, fetch: PackumentFetch) -> CachedPackument:
        """`fetch` with the validators held for `key`; its answer kept when it has any."""
        fetched = fetch(self._cached(key))
        if fetched.etag or fetched.last_modified:
            self._store(key, fetched)
        return fetched

    def current(self, key: str) -> str | None:
        """Always None: nothing on disk counts as fresh (every read asks again)."""
        return None

    def _path(self, key: str) -> Path:
        return self.directory / (hashlib.sha256(key.encode()).hexdigest() + ".json")

    def _cached(self, key: str) -> CachedPackument | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except ValueError:
            return None
        if not isinstance(data, dict) or "body" not in data:
            return None
        return CachedPackument(data["body"], data.get("etag"), data.get("last_modified"))

    def _store(self, key: str, fetched: CachedPackument) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        record = {
            "etag": fetched.etag,
            "last_modified": fetched.last_modified,
            "body": fetched.body,
        }
        # unique per writer: two threads of one process may store the same packument at once
        temporary = path.with_suffix(f".{os.getpid()}.{uuid.uuid4().hex}.tmp")
        temporary.write_text(json.dumps(record), encoding="utf-8")
        temporary.replace(path)


class NpmRegistry:
    """Reads packuments and tarballs from the configured npm registry (or registries)."""

    def __init__(
        self,
        settings: NpmSettings,
        http: HttpSource,
        *,
        cache_dir: Path | None = None,
        cache: PackumentCache | None = None,
    ) -> None:
        """Packuments are kept in `cache`, else on disk in `cache_dir`, else only in memory."""
        self.settings = settings
        self.http = http
        self.cache = cache or (DiskPackumentCache(cache_dir) if cache_dir is not None else None)
        self._packuments: dict[str, Packument] = {}

    def packument_url(self, name: str) -> str:
        """The packument URL of `name` (scope slash encoded as npm does)."""
        strict_package_name(name, source="package name")
        return self.settings.registry_for(name) + quote(name, safe="@")

    def packument(self, name: str) -> Packument:
        """The packument of `name`, from memory, the cache (if still fresh) or the registry."""
        if name in self._packuments:
            return self._packuments[name]
        url = self.packument_url(name)

        def fetch(cached: CachedPackument | None) -> CachedPackument:
            return self._fetch(name, url, cached)

        key = self._key(url)
        data = (fetch(None) if self.cache is None else self.cache.get(key, fetch)).body
        observe("npm", key, body_digest(data))
        if not isinstance(data, dict):
            raise InvalidRemoteData(f"{host_of(url)} returned a packument that is not an object")
        packument = Packument(name, data, host=host_of(url))
        self._packuments[name] = packument
        return packument

    def _key(self, url: str) -> str:
        """The cache key of `url`: the URL, and a fingerprint of the credentials sent to it (a
        private packument is never served to a repository whose token would not get it)."""
        auth = self.settings.auth_headers(url)
        if not auth:
            return url
        fingerprint = hashlib.sha256(json.dumps(auth, sort_keys=True).encode()).hexdigest()
        return f"{url}#{fingerprint[:16]}"

    def _fetch(self, name: str, url: str, cached: CachedPackument | None) -> CachedPackument:
        """One (conditional, when `cached` has validators) request for a packument."""
        headers = {"Accept": "application/json", **self.settings.auth_headers(url)}
        if cached is not None:
            if cached.etag:
                headers["If-None-Match"] = cached.etag
            if cached.last_modified:
                headers["If-Modified-Since"] = cached.last_modified
        body = self.http.fetch("GET", url, headers=headers)
        if body.status_code == 304 and cached is not None:
            return cached
        if body.status_code == 404:
            raise InvalidRemoteData(f"{host_of(url)} has no package {name}; check the registry")
        if body.status_code != 200:
            raise unexpected_answer(url, name, body.status_code)
        return CachedPackument(
            body.json(), body.headers.get("etag"), body.headers.get("last-modified")
        )

    def hash_tarball(self, url: str, *, limit: int = TARBALL_LIMIT) -> TarballHash:
        """Stream a tarball through sha512 (never to disk); refuse past `limit` bytes."""
        sink = _Sha512()
        self._stream(url, limit, sink)
        return TarballHash(url=url, integrity=sink.integrity, size=sink.size)

    def download_tarball(self, url: str, *, limit: int = TARBALL_LIMIT) -> tuple[bytes, str]:
        """A tarball's bytes (up to `limit`) and their sha512 SRI string."""
        sink = _Sha512(keep=True)
        self._stream(url, limit, sink)
        return bytes(sink.data or b""), sink.integrity

    def _stream(self, url: str, limit: int, sink: _Sha512) -> None:
        body = self.http.fetch(
            "GET", url, headers=self.settings.auth_headers(url), limit=limit, sink=sink
        )
        if body.status_code != 200:
            raise ServiceUnavailable(f"{host_of(url)} answered HTTP {body.status_code} for {url}")
