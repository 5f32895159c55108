"""OCI documents, validated: media types, manifest heads, image indexes and configs (pure)."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import httpx

from bot.errors import InvalidRemoteData

OCI_INDEX = "application/vnd.oci.image.index.v1+json"


DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"


OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"


INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})


MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)


MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)


_FRACTION = re.compile(r"(\.\d{6})\d+")


class TagNotFound(InvalidRemoteData):
    """The registry has no manifest for the tag (or digest) asked for."""

    slug = "tag-not-found"


@dataclass(frozen=True)
class ManifestHead:
    """What a `HEAD` (or the fallback `GET`) of a tag says: its digest and media type."""

    digest: str
    media_type: str

    @property
    def is_index(self) -> bool:
        """Whether the tag is a multi-platform index (the digest a Dockerfile pins)."""
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True)
class PlatformManifest:
    """One entry of an index: a platform (`linux/arm64/v8`) and its manifest digest."""

    platform: str
    digest: str


@dataclass(frozen=True)
class Manifest:
    """A fetched and verified manifest: an index's entries, or an image's config digest."""

    digest: str
    media_type: str
    platforms: tuple[PlatformManifest, ...] = ()
    config_digest: str | None = None

    @property
    def is_index(self) -> bool:
        """Whether this is an image index / manifest list."""
        return self.media_type in INDEX_TYPES


@dataclass(frozen=True)
class ImageDetails:
    """Facts about one digest: the platforms it serves and the build date of one of them."""

    digest: str
    platforms: tuple[str, ...]
    created: datetime | None


def platform_matches(wanted: str, offered: str) -> bool:
    """`linux/arm64` matches `linux/arm64/v8`; a requested variant must match exactly."""
    wanted_parts = wanted.split("/")
    offered_parts = offered.split("/")
    if wanted_parts[:2] != offered_parts[:2]:
        return False
    if len(wanted_parts) < 3:
        return True
    offered_variant = offered_parts[2] if len(offered_parts) > 2 else ""
    if wanted_parts[1] == "arm64" and {wanted_parts[2], offered_variant} <= {"v8", ""}:
        return True
    return wanted_parts[2] == offered_variant


def platform_of(data: Mapping[str, Any]) -> str:
    os_name, architecture = data.get("os"), data.get("architecture")
    if not isinstance(os_name, str) or not isinstance(architecture, str):
        return "unknown/unknown"
    variant = data.get("variant")
    return "/".join(
        [os_name, architecture, *([variant] if isinstance(variant, str) and variant else [])]
    )


def parse_created(value: object) -> datetime | None:
    """An image config's RFC 3339 `created` (nanoseconds allowed) as an aware datetime."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r"\1", value.replace("Z", "+00:00")))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})


DOCKER_HUB_REGISTRY = "registry-1.docker.io"


def canonical_host(name: str) -> str:
    """`index.docker.io`, `docker.io` → `registry-1.docker.io`; other hosts as given, lower-case."""
    host = name.lower()
    return DOCKER_HUB_REGISTRY if host in DOCKER_HUB_ALIASES else host


def bare_host(host: str) -> str:
    """The host name of `host[:port]` (IPv6 brackets removed)."""
    return httpx.URL(f"http://{host}").host


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` is `localhost` or in 127.0.0.0/8 (or ::1)."""
    name = bare_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False
