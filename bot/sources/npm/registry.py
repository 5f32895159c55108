"""The npm registry client: packuments (cached on disk with conditional requests when the
registry sends `ETag` / `Last-Modified`) and tarballs streamed through sha512."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from bot.errors import InvalidRemoteData, ServiceUnavailable
from bot.models import strict_package_name
from bot.sources.http import HttpSource, host_of
from bot.sources.npm.models import Packument
from bot.sources.npm.settings import NpmSettings

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
