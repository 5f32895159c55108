"""OCI registries through the distribution API: tag → digest, image indexes, image configs.

A tag is resolved with one `HEAD` of its manifest (the full `Accept` list: OCI index, Docker
manifest list, OCI manifest, Docker v2 manifest) and its `Docker-Content-Digest`; for a
multi-arch tag that is the index digest, which is what a Dockerfile should pin.  Only when a
registry omits the header is the manifest fetched and hashed.  Other `GET`s happen only for
facts a `HEAD` cannot give (an image's `created` date, the platforms in an index), and every
fetched manifest or config is checked against its digest.

Authentication follows the registry's `WWW-Authenticate` challenge: `Bearer realm,service,scope`
(a token from the realm, anonymous or with the user's credentials) or `Basic`.  Credentials come
from the docker `config.json` (`DOCKER_CONFIG` or `~/.docker/config.json`, `auths.*.auth`).
Registries on 127.0.0.0/8 and `localhost` are reached over plain HTTP, as Docker does; others
over HTTPS unless listed in `Settings.insecure_registries`.  A mirror configured for a registry
(`Settings.registry_mirrors`) serves every lookup while the Dockerfile keeps the canonical name.
Rate-limit headers (`RateLimit-Remaining`) are respected: with nothing left, no more `GET`s.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import ipaddress
import json
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from bot.config import Settings
from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable, register_secret
from bot.sources.http import Body, HttpSource

log = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_MANIFEST_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
INDEX_TYPES = frozenset({OCI_INDEX, DOCKER_MANIFEST_LIST})
MANIFEST_TYPES = (OCI_INDEX, DOCKER_MANIFEST_LIST, OCI_MANIFEST, DOCKER_MANIFEST)
MANIFEST_ACCEPT = ", ".join(MANIFEST_TYPES)
MANIFEST_LIMIT = 4 * 1024 * 1024
CONFIG_LIMIT = 8 * 1024 * 1024
TOKEN_LIMIT = 1024 * 1024
DOCKER_HUB_ALIASES = frozenset({"docker.io", "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_REGISTRY = "registry-1.docker.io"
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS = 5
_CHALLENGE_PARAMETER = re.compile(
    r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))'
)
_TOKEN = re.compile(r"^[\x21-\x7e]{1,8192}$")
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_FRACTION = re.compile(r"(\.\d{6})\d+")


class TagNotFound(InvalidRemoteData):
    """The registry has no manifest for the tag (or digest) asked for."""

    slug = "tag-not-found"


def _canonical_host(name: str) -> str:
    """`index.docker.io`, `docker.io` → `registry-1.docker.io`; other hosts as given, lower-case."""
    host = name.lower()
    return DOCKER_HUB_REGISTRY if host in DOCKER_HUB_ALIASES else host


def _bare_host(host: str) -> str:
    """The host name of `host[:port]` (IPv6 brackets removed)."""
    return httpx.URL(f"http://{host}").host


def is_loopback(host: str) -> bool:
    """Whether `host[:port]` is `localhost` or in 127.0.0.0/8 (or ::1)."""
    name = _bare_host(host)
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Credential:
    """A user name and password for one registry, from the docker config."""

    username: str
    password: str

    def header(self) -> str:
        """The `Authorization: Basic …` value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (HOME from `environ`)."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    return Path(environ.get("HOME") or Path.home()) / ".docker" / "config.json"


def load_docker_credentials(environ: Mapping[str, str]) -> dict[str, Credential]:
    """Credentials by registry host from the docker config's `auths` (none when no file)."""
    path = docker_config_path(environ)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from error
    except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON; fix or remove it") from error
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return {}
    credentials: dict[str, Credential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        credential = _credential(entry, source=f"{path} auths[{key!r}]")
        if credential is None:
            continue
        address = str(key) if "://" in str(key) else f"https://{key}"
        url = httpx.URL(address)
        host = f"{url.host}:{url.port}" if url.port else url.host
        credentials[_canonical_host(host)] = credential
    return credentials


def _credential(entry: Mapping[str, Any], *, source: str) -> Credential | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, colon, password = (
                base64.b64decode(auth, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ConfigError(f"{source}: auth is not base64 of user:password") from error
        if not colon:
            raise ConfigError(f"{source}: auth is not base64 of user:password")
    else:
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if not username or not password:
        return None
    register_secret(password)
    register_secret(auth if isinstance(auth, str) else None)
    return Credential(username, password)


@dataclass(frozen=True)
class Endpoint:
    """Where lookups for one registry go: a base URL, a host (for credentials), a path prefix."""

    base_url: str
    host: str
    prefix: str = ""

    def url(self, repository: str, path: str) -> str:
        """`<base>/v2/<prefix><repository>/<path>`."""
        return f"{self.base_url}/v2/{self.prefix}{repository}/{path}"


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


def _platform_of(data: Mapping[str, Any]) -> str:
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


class OciClient:
    """Looks up tags, manifests and image configs in OCI registries (or their mirrors)."""

    def __init__(
        self,
        http: HttpSource,
        *,
        credentials: Mapping[str, Credential] | None = None,
        insecure_registries: tuple[str, ...] = (),
        mirrors: Mapping[str, str] | None = None,
    ) -> None:
        self.http = http
        self.credentials = {
            _canonical_host(host): item for host, item in (credentials or {}).items()
        }
        self.insecure_registries = frozenset(_canonical_host(host) for host in insecure_registries)
        self.mirrors = {_canonical_host(host): mirror for host, mirror in (mirrors or {}).items()}
        self._authorization: dict[tuple[str, str], str] = {}
        self._remaining: dict[str, tuple[int, str]] = {}
        self._manifests: dict[tuple[str, str, str], Manifest] = {}

    # --- where and how -----------------------------------------------------------------

    def endpoint(self, registry: str) -> Endpoint:
        """The endpoint serving `registry`: its mirror if one is configured, else itself."""
        host = _canonical_host(registry)
        target = self.mirrors.get(host, host)
        scheme, separator, rest = target.partition("://")
        if not separator:
            scheme, rest = "", target
        address, _, prefix = rest.partition("/")
        address = _canonical_host(address)
        if not scheme:
            plain = is_loopback(address) or address in self.insecure_registries
            scheme = "http" if plain else "https"
        if scheme not in ("http", "https"):
            raise ConfigError(
                f"registry mirror {target!r} must be host[:port][/prefix] or an http(s) URL"
            )
        prefix = prefix.strip("/")
        return Endpoint(f"{scheme}://{address}", address, f"{prefix}/" if prefix else "")

    def _plain_http_allowed(self, url: str) -> bool:
        parsed = httpx.URL(url)
        host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
        return is_loopback(host) or _canonical_host(host) in self.insecure_registries

    # --- public lookups ----------------------------------------------------------------

    def resolve(self, registry: str, repository: str, tag: str) -> ManifestHead:
        """The digest a tag points at now (an index digest for a multi-arch tag)."""
        endpoint = self.endpoint(registry)
        subject = f"{registry}/{repository}:{tag}"
        body = self._request(
            "HEAD", endpoint, repository, f"manifests/{tag}", accept=MANIFEST_ACCEPT
        )
        self._expect_found(body, endpoint, subject)
        media_type = _media_type(body)
        header = body.headers.get("docker-content-digest")
        if header and media_type in MANIFEST_TYPES:
            return ManifestHead(self._digest(header, endpoint, subject), media_type)
        log.info(
            "no Docker-Content-Digest or manifest type from %s; hashing the manifest",
            endpoint.base_url,
        )
        body = self._request(
            "GET", endpoint, repository, f"manifests/{tag}", accept=MANIFEST_ACCEPT
        )
        self._expect_found(body, endpoint, subject)
        digest = "sha256:" + hashlib.sha256(body.content).hexdigest()
        if header:
            self._verify(body.content, self._digest(header, endpoint, subject), endpoint, subject)
        manifest = self._parse_manifest(body, digest, endpoint, subject)
        self._manifests[(endpoint.base_url, repository, digest)] = manifest
        return ManifestHead(digest, manifest.media_type)

    def manifest(self, registry: str, repository: str, digest: str) -> Manifest:
        """The manifest (or index) stored under `digest`, verified against it."""
        endpoint = self.endpoint(registry)
        key = (endpoint.base_url, repository, digest)
        if key in self._manifests:
            return self._manifests[key]
        subject = f"{registry}/{repository}@{digest}"
        self._digest(digest, endpoint, subject)
        body = self._request(
            "GET", endpoint, repository, f"manifests/{digest}", accept=MANIFEST_ACCEPT
        )
        self._expect_found(body, endpoint, subject)
        self._verify(body.content, digest, endpoint, subject)
        manifest = self._parse_manifest(body, digest, endpoint, subject)
        self._manifests[key] = manifest
        return manifest

    def details(
        self, registry: str, repository: str, digest: str, platform: str | None
    ) -> ImageDetails:
        """The platforms `digest` serves and the `created` date of `platform` (or the first)."""
        manifest = self.manifest(registry, repository, digest)
        if manifest.is_index:
            offered = tuple(
                entry.platform
                for entry in manifest.platforms
                if entry.platform != "unknown/unknown"
            )
            chosen = next(
                (
                    entry
                    for entry in manifest.platforms
                    if platform is None or platform_matches(platform, entry.platform)
                ),
                None,
            )
            if chosen is None or chosen.platform == "unknown/unknown":
                return ImageDetails(digest, offered, None)
            image = self.manifest(registry, repository, chosen.digest)
        else:
            offered, image = (), manifest
        config = self._config(registry, repository, image)
        if not manifest.is_index:
            offered = (_platform_of(config),)
        return ImageDetails(digest, offered, parse_created(config.get("created")))

    # --- internals ---------------------------------------------------------------------

    def _config(self, registry: str, repository: str, image: Manifest) -> Mapping[str, Any]:
        endpoint = self.endpoint(registry)
        subject = f"{registry}/{repository}@{image.digest}"
        if image.config_digest is None:
            raise InvalidRemoteData(f"{endpoint.base_url}: {subject} has no config")
        body = self._request(
            "GET", endpoint, repository, f"blobs/{image.config_digest}", limit=CONFIG_LIMIT
        )
        self._expect_found(body, endpoint, f"config of {subject}")
        self._verify(body.content, image.config_digest, endpoint, f"config of {subject}")
        data = body.json()
        if not isinstance(data, dict):
            raise InvalidRemoteData(f"{endpoint.base_url}: config of {subject} is not an object")
        return data

    def _request(
        self,
        method: str,
        endpoint: Endpoint,
        repository: str,
        path: str,
        *,
        accept: str | None = None,
        limit: int = MANIFEST_LIMIT,
    ) -> Body:
        if method != "HEAD":
            self._check_rate_limit(endpoint)
        url = endpoint.url(repository, path)
        key = (endpoint.host, repository)
        headers = {"Accept": accept} if accept else {}
        body = self._fetch(method, url, headers, self._authorization.get(key), limit)
        if body.status_code == 401:
            self._authorization[key] = self._authorize(endpoint, repository, body)
            body = self._fetch(method, url, headers, self._authorization[key], limit)
        if body.status_code in (401, 403):
            raise ServiceUnavailable(
                f"{endpoint.base_url} refused access to {repository} (HTTP {body.status_code}); "
                "check the credentials in the docker config.json (`docker login`)",
                registry=endpoint.host,
            )
        return body

    def _fetch(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        authorization: str | None,
        limit: int,
    ) -> Body:
        """One request, following redirects (blobs live on CDNs); auth never leaves the host."""
        origin = httpx.URL(url).host
        for _ in range(_MAX_REDIRECTS):
            sent = dict(headers)
            if authorization and httpx.URL(url).host == origin:
                sent["Authorization"] = authorization
            body = self.http.fetch(method, url, headers=sent, limit=limit)
            self._note_rate_limit(url, body)
            location = body.headers.get("location")
            if body.status_code not in _REDIRECTS or not location:
                return body
            target = urljoin(url, location)
            if not target.startswith("https://") and not (
                target.startswith("http://") and self._plain_http_allowed(target)
            ):
                raise InvalidRemoteData(f"{httpx.URL(url).host} redirected to a non-HTTPS URL")
            url = target
        raise InvalidRemoteData(f"{origin} redirected more than {_MAX_REDIRECTS} times")

    def _authorize(self, endpoint: Endpoint, repository: str, body: Body) -> str:
        """Answer a 401 challenge: a Bearer token from the realm, or Basic credentials."""
        challenge = body.headers.get("www-authenticate", "")
        scheme, _, rest = challenge.strip().partition(" ")
        credential = self.credentials.get(endpoint.host)
        if scheme.lower() == "basic":
            if credential is None:
                raise ServiceUnavailable(
                    f"{endpoint.base_url} needs credentials for {repository}; add them to the "
                    "docker config.json (`docker login`)",
                    registry=endpoint.host,
                )
            return credential.header()
        if scheme.lower() != "bearer":
            raise ServiceUnavailable(
                f"{endpoint.base_url} answered HTTP 401 without a Bearer or Basic challenge",
                registry=endpoint.host,
            )
        parameters = {
            match.group(1).lower(): match.group(2) if match.group(2) is not None else match.group(3)
            for match in _CHALLENGE_PARAMETER.finditer(rest)
        }
        realm = parameters.get("realm", "")
        if not (
            realm.startswith("https://")
            or (realm.startswith("http://") and self._plain_http_allowed(realm))
        ):
            raise InvalidRemoteData(
                f"{endpoint.base_url} sent a token realm {realm!r} that is not an HTTPS URL"
            )
        query = {
            "service": parameters.get("service", ""),
            "scope": parameters.get("scope") or f"repository:{repository}:pull",
        }
        separator = "&" if "?" in realm else "?"
        url = f"{realm}{separator}{urlencode({name: v for name, v in query.items() if v})}"
        headers = {"Accept": "application/json"}
        if credential is not None:
            headers["Authorization"] = credential.header()
        answer = self.http.fetch("GET", url, headers=headers, limit=TOKEN_LIMIT)
        realm_host = httpx.URL(realm).host
        if answer.status_code in (401, 403):
            raise ServiceUnavailable(
                f"token service {realm_host} refused access to {repository} "
                f"(HTTP {answer.status_code}); check the credentials in the docker config.json",
                registry=endpoint.host,
            )
        if answer.status_code != 200:
            raise ServiceUnavailable(
                f"token service {realm_host} answered HTTP {answer.status_code}",
                registry=endpoint.host,
            )
        data = answer.json()
        token = data.get("token") or data.get("access_token") if isinstance(data, dict) else None
        if not isinstance(token, str) or not _TOKEN.match(token):
            raise InvalidRemoteData(f"token service {realm_host} answered without a usable token")
        register_secret(token)
        return f"Bearer {token}"

    def _note_rate_limit(self, url: str, body: Body) -> None:
        header = body.headers.get("ratelimit-remaining")
        if not header:
            return
        count, _, window = header.partition(";")
        if count.strip().isdigit():
            parsed = httpx.URL(url)
            host = f"{parsed.host}:{parsed.port}" if parsed.port else parsed.host
            self._remaining[host] = (int(count), window.strip())
            if int(count) < 10:
                log.warning("registry %s rate limit: %s requests left", host, count.strip())

    def _check_rate_limit(self, endpoint: Endpoint) -> None:
        count, window = self._remaining.get(endpoint.host, (1, ""))
        if count <= 0:
            wait = f" ({window})" if window else ""
            raise ServiceUnavailable(
                f"{endpoint.base_url} rate limit is used up{wait}; try again later or log in "
                "for a higher limit",
                registry=endpoint.host,
            )

    @staticmethod
    def _expect_found(body: Body, endpoint: Endpoint, subject: str) -> None:
        if body.status_code == 404:
            raise TagNotFound(
                f"{endpoint.base_url} has no manifest for {subject}; check the image name and tag",
                registry=endpoint.host,
            )
        if body.status_code != 200:
            raise InvalidRemoteData(
                f"{endpoint.base_url} answered HTTP {body.status_code} for {subject}",
                registry=endpoint.host,
            )

    @staticmethod
    def _digest(value: str, endpoint: Endpoint, subject: str) -> str:
        if not _DIGEST.match(value):
            raise InvalidRemoteData(
                f"{endpoint.base_url} gave digest {value[:80]!r} for {subject}, expected "
                "sha256:<64 hex>; refusing to use it",
                registry=endpoint.host,
            )
        return value

    @staticmethod
    def _verify(content: bytes, digest: str, endpoint: Endpoint, subject: str) -> None:
        actual = "sha256:" + hashlib.sha256(content).hexdigest()
        if actual != digest:
            raise InvalidRemoteData(
                f"{endpoint.base_url} sent content for {subject} that hashes to {actual}",
                registry=endpoint.host,
            )

    @staticmethod
    def _parse_manifest(body: Body, digest: str, endpoint: Endpoint, subject: str) -> Manifest:
        data = body.json()
        if not isinstance(data, dict) or data.get("schemaVersion") != 2:
            raise InvalidRemoteData(
                f"{endpoint.base_url} answered {subject} with something that is not a "
                "schema 2 manifest",
                registry=endpoint.host,
            )
        media_type = data.get("mediaType") or _media_type(body)
        if media_type not in MANIFEST_TYPES:
            media_type = OCI_INDEX if "manifests" in data else OCI_MANIFEST
        if media_type in INDEX_TYPES:
            entries = data.get("manifests")
            if not isinstance(entries, list):
                raise InvalidRemoteData(f"{endpoint.base_url}: index {subject} has no manifests")
            platforms = []
            for entry in entries:
                if not isinstance(entry, dict):
                    raise InvalidRemoteData(f"{endpoint.base_url}: index {subject} is malformed")
                child = OciClient._digest(str(entry.get("digest")), endpoint, subject)
                platform = entry.get("platform")
                platforms.append(
                    PlatformManifest(
                        _platform_of(platform if isinstance(platform, dict) else {}), child
                    )
                )
            return Manifest(digest, media_type, platforms=tuple(platforms))
        config = data.get("config")
        if not isinstance(config, dict):
            raise InvalidRemoteData(f"{endpoint.base_url}: manifest {subject} has no config")
        config_digest = OciClient._digest(str(config.get("digest")), endpoint, subject)
        return Manifest(digest, media_type, config_digest=config_digest)


def _media_type(body: Body) -> str:
    header: str = body.headers.get("content-type", "")
    return header.split(";", 1)[0].strip()


def make_oci_client(
    settings: Settings, environ: Mapping[str, str], *, http: HttpSource | None = None
) -> OciClient:
    """The client for `Services.oci`: docker credentials, insecure registries and mirrors."""
    return OciClient(
        http or HttpSource(),
        credentials=load_docker_credentials(environ),
        insecure_registries=settings.insecure_registries,
        mirrors=dict(settings.registry_mirrors),
    )
