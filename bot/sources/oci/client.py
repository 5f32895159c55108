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

import hashlib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urljoin

import httpx

from bot.config import Settings
from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable, register_secret
from bot.sources.http import Body, HttpSource
from bot.sources.oci.credentials import Credential, load_docker_credentials
from bot.sources.oci.models import (
    INDEX_TYPES,
    MANIFEST_ACCEPT,
    MANIFEST_TYPES,
    OCI_INDEX,
    OCI_MANIFEST,
    ImageDetails,
    Manifest,
    ManifestHead,
    PlatformManifest,
    TagNotFound,
    canonical_host,
    is_loopback,
    parse_created,
    platform_matches,
    platform_of,
)

log = logging.getLogger(__name__)

MANIFEST_LIMIT = 4 * 1024 * 1024


CONFIG_LIMIT = 8 * 1024 * 1024


TOKEN_LIMIT = 1024 * 1024


_REDIRECTS = frozenset({301, 302, 303, 307, 308})


_MAX_REDIRECTS = 5


_CHALLENGE_PARAMETER = re.compile(
    r'([A-Za-z_][A-Za-z0-9_-]*)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]+))'
)


_TOKEN = re.compile(r"^[\x21-\x7e]{1,8192}$")


_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


@dataclass(frozen=True)
class Endpoint:
    """Where lookups for one registry go: a base URL, a host (for credentials), a path prefix."""

    base_url: str
    host: str
    prefix: str = ""

    def url(self, repository: str, path: str) -> str:
        """`<base>/v2/<prefix><repository>/<path>`."""
        return f"{self.base_url}/v2/{self.prefix}{repository}/{path}"


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
            canonical_host(host): item for host, item in (credentials or {}).items()
        }
        self.insecure_registries = frozenset(canonical_host(host) for host in insecure_registries)
        self.mirrors = {canonical_host(host): mirror for host, mirror in (mirrors or {}).items()}
        self._authorization: dict[tuple[str, str], str] = {}
        self._remaining: dict[str, tuple[int, str]] = {}
        self._manifests: dict[tuple[str, str, str], Manifest] = {}

    # --- where and how -----------------------------------------------------------------

    def endpoint(self, registry: str) -> Endpoint:
        """The endpoint serving `registry`: its mirror if one is configured, else itself."""
        host = canonical_host(registry)
        target = self.mirrors.get(host, host)
        scheme, separator, rest = target.partition("://")
        if not separator:
            scheme, rest = "", target
        address, _, prefix = rest.partition("/")
        address = canonical_host(address)
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
        return is_loopback(host) or canonical_host(host) in self.insecure_registries

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
            "no Docker-Content-Digest or manifest type; hashing the manifest",
            extra={"registry": str(endpoint.base_url)},
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
            offered = (platform_of(config),)
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
                log.warning(
                    "registry rate limit low", extra={"host": host, "remaining": count.strip()}
                )

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
                        platform_of(platform if isinstance(platform, dict) else {}), child
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
