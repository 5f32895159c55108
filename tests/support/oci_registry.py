"""A real OCI registry for the tests: CNCF distribution (`docker-registry serve`) on 127.0.0.1.

Three flavours: no auth, htpasswd Basic auth, and Bearer token auth through a small local token
service (stdlib http.server + PyJWT: ES256 tokens signed by a self-signed P-256 certificate that
the registry trusts).  Images are seeded with plain HTTP pushes (blob upload, manifest PUT): small
single-platform images and multi-platform indexes; pushing again with other content moves a
tag.  A deliberately broken "registry" answers manifest requests with garbage.

Run as a script, this module serves the token service or the broken registry in its own
process (the fixtures start it with `subprocess.Popen`).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qs, urlparse

import httpx
import pytest

from tests.support.processes import free_port, stop_process, wait_for_http

REGISTRY_BINARY = Path("/usr/bin/docker-registry")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
SERVICE = "rotation-bot-test-registry"
ISSUER = "rotation-bot-test-token-issuer"
USERNAME = "registry-user"
PASSWORD = "registry-password-1234"

Auth = Literal["none", "htpasswd", "token"]


def digest_of(data: bytes) -> str:
    """`sha256:<hex>` of `data`."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


# --- images ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Blob:
    """Content pushed by digest."""

    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return digest_of(self.data)

    def descriptor(self, **extra: Any) -> dict[str, Any]:
        return {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": len(self.data),
            **extra,
        }


@dataclass(frozen=True)
class Image:
    """One single-platform image: layer, config and manifest."""

    layer: Blob
    config: Blob
    manifest: Blob
    platform: str

    @property
    def digest(self) -> str:
        return self.manifest.digest


def make_image(content: str, *, platform: str = "linux/amd64", created: str | None) -> Image:
    """A tiny image whose one layer holds `content` (different content → different digest);
    `created=None` leaves the date out of the config, as some builders do."""
    data = content.encode()
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as archive:
        info = tarfile.TarInfo("etc/image-content")
        info.size = len(data)
        info.mtime = 0
        archive.addfile(info, io.BytesIO(data))
    tar = raw.getvalue()
    layer = Blob(OCI_LAYER, gzip.compress(tar, mtime=0))
    os_name, architecture, *variant = platform.split("/")
    config_data: dict[str, Any] = {
        "architecture": architecture,
        "os": os_name,
        "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},
        "config": {"Env": ["PATH=/usr/bin"]},
    }
    if variant:
        config_data["variant"] = variant[0]
    if created is not None:
        config_data["created"] = created
    config = Blob(OCI_CONFIG, json.dumps(config_data, sort_keys=True).encode())
    manifest = Blob(
        OCI_MANIFEST,
        json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": OCI_MANIFEST,
                "config": config.descriptor(),
                "layers": [layer.descriptor()],
            },
            sort_keys=True,
        ).encode(),
    )
    return Image(layer, config, manifest, platform)


def make_index(images: Sequence[Image]) -> Blob:
    """An OCI index over `images`, each entry carrying its platform."""
    entries = []
    for image in images:
        os_name, architecture, *variant = image.platform.split("/")
        platform = {"os": os_name, "architecture": architecture}
        if variant:
            platform["variant"] = variant[0]
        entries.append(image.manifest.descriptor(platform=platform))
    body = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": entries}
    return Blob(OCI_INDEX, json.dumps(body, sort_keys=True).encode())


# --- the registry -----------------------------------------------------------------------


@dataclass
class Registry:
    """A running registry: `host` (127.0.0.1:PORT) and how to push to it."""

    host: str
    auth: Auth
    directory: Path
    process: subprocess.Popen[bytes]
    helpers: list[subprocess.Popen[bytes]] = field(default_factory=list)
    token_url: str | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _client(self, repository: str) -> httpx.Client:
        headers: dict[str, str] = {}
        basic = httpx.BasicAuth(USERNAME, PASSWORD)
        if self.auth == "token":
            assert self.token_url is not None
            answer = httpx.get(
                self.token_url,
                params={"service": SERVICE, "scope": f"repository:{repository}:pull,push"},
                auth=basic,
                timeout=10,
            )
            answer.raise_for_status()
            headers["Authorization"] = f"Bearer {answer.json()['token']}"
        return httpx.Client(
            base_url=f"{self.url}/v2/{repository}/",
            headers=headers,
            auth=basic if self.auth == "htpasswd" else None,
            timeout=30,
        )

    def _push_blob(self, client: httpx.Client, blob: Blob) -> None:
        if client.head(f"blobs/{blob.digest}").status_code == 200:
            return
        started = client.post("blobs/uploads/")
        assert started.status_code == 202, started.text
        location = started.headers["location"]
        separator = "&" if "?" in location else "?"
        # httpx's params= would replace the _state query: append the digest to the URL itself.
        done = client.put(
            f"{location}{separator}digest={blob.digest}",
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )
        assert done.status_code == 201, done.text

    def _push_manifest(self, client: httpx.Client, reference: str, manifest: Blob) -> None:
        answer = client.put(
            f"manifests/{reference}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        assert answer.status_code == 201, answer.text

    def push_image(
        self,
        repository: str,
        tag: str,
        content: str,
        *,
        platform: str = "linux/amd64",
        created: str | None = "2024-01-02T03:04:05.123456789Z",
    ) -> str:
        """Push a single-platform image under `tag`; returns the manifest digest."""
        image = make_image(content, platform=platform, created=created)
        with self._client(repository) as client:
            self._push_blob(client, image.layer)
            self._push_blob(client, image.config)
            self._push_manifest(client, tag, image.manifest)
        return image.digest

    def push_index(
        self,
        repository: str,
        tag: str,
        content: str,
        *,
        platforms: Sequence[str] = ("linux/amd64", "linux/arm64/v8"),
        created: str | Mapping[str, str] = "2024-01-02T03:04:05Z",
    ) -> str:
        """Push a multi-platform index under `tag`; returns the index digest."""
        images = [
            make_image(
                f"{content} {platform}",
                platform=platform,
                created=created if isinstance(created, str) else created[platform],
            )
            for platform in platforms
        ]
        index = make_index(images)
        with self._client(repository) as client:
            for image in images:
                self._push_blob(client, image.layer)
                self._push_blob(client, image.config)
                self._push_manifest(client, image.digest, image.manifest)
            self._push_manifest(client, tag, index)
        return index.digest

    def stop(self) -> None:
        """Stop the registry and its helpers by their process groups."""
        for process in [self.process, *self.helpers]:
            stop_process(process)


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed P-256 certificate and its key (PEM) for signing tokens."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, ISSUER)])
    now = dt.datetime.now(dt.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path = directory / "token-cert.pem"
    key_path = directory / "token-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def _spawn(argv: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as output:
        return subprocess.Popen(
            argv,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={
                "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                "PYTHONPATH": str(Path(__file__).resolve().parents[2]),
            },
        )


def start_registry(directory: Path, auth: Auth = "none") -> Registry:
    """Start a registry (and its token service for `token`) in `directory`; wait until ready."""
    if not REGISTRY_BINARY.exists():
        raise RuntimeError(
            f"{REGISTRY_BINARY} missing: apt-get install -y docker-registry apache2-utils"
        )
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    storage = directory / "storage"
    storage.mkdir(exist_ok=True)
    helpers: list[subprocess.Popen[bytes]] = []
    token_url = None
    auth_section = ""
    if auth == "htpasswd":
        htpasswd = subprocess.run(
            ["htpasswd", "-Bbn", USERNAME, PASSWORD], capture_output=True, check=True, text=True
        ).stdout
        (directory / "htpasswd").write_text(htpasswd)
        auth_section = (
            f"auth:\n  htpasswd:\n    realm: {SERVICE}\n    path: {directory / 'htpasswd'}\n"
        )
    elif auth == "token":
        cert, key = _certificate(directory)
        token_port = free_port()
        token_url = f"http://127.0.0.1:{token_port}/token"
        helper = _spawn(
            [
                sys.executable,
                str(Path(__file__).resolve()),
                "token-service",
                "--port",
                str(token_port),
                "--cert",
                str(cert),
                "--key",
                str(key),
            ],
            directory / "token-service.log",
        )
        helpers.append(helper)
        wait_for_http(
            f"http://127.0.0.1:{token_port}/ready", helper, directory / "token-service.log"
        )
        auth_section = (
            "auth:\n  token:\n"
            f"    realm: {token_url}\n    service: {SERVICE}\n    issuer: {ISSUER}\n"
            f"    rootcertbundle: {cert}\n"
        )
    config = directory / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n  accesslog:\n    disabled: true\n"
        f"storage:\n  filesystem:\n    rootdirectory: {storage}\n  delete:\n    enabled: true\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
        f"{auth_section}"
    )
    log = directory / "registry.log"
    process = _spawn([str(REGISTRY_BINARY), "serve", str(config)], log)
    try:
        wait_for_http(f"http://127.0.0.1:{port}/v2/", process, log)
    except RuntimeError:
        for helper in helpers:
            stop_process(helper)
        raise
    return Registry(f"127.0.0.1:{port}", auth, directory, process, helpers, token_url)


@dataclass
class BrokenRegistry:
    """A "registry" answering manifest requests with garbage (see `serve_broken`)."""

    host: str
    process: subprocess.Popen[bytes]

    def stop(self) -> None:
        stop_process(self.process)


def start_broken_registry(directory: Path) -> BrokenRegistry:
    """Start the misbehaving registry (see `serve_broken` for what each tag does)."""
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = directory / "broken.log"
    process = _spawn(
        [sys.executable, str(Path(__file__).resolve()), "broken-registry", "--port", str(port)],
        log,
    )
    wait_for_http(f"http://127.0.0.1:{port}/ready", process, log)
    return BrokenRegistry(f"127.0.0.1:{port}", process)


def docker_config(directory: Path, auths: Mapping[str, tuple[str, str]]) -> Path:
    """Write a docker `config.json` with `auths` (host → user, password); returns its folder."""
    directory.mkdir(parents=True, exist_ok=True)
    entries = {
        host: {"auth": base64.b64encode(f"{user}:{password}".encode()).decode()}
        for host, (user, password) in auths.items()
    }
    (directory / "config.json").write_text(json.dumps({"auths": entries}))
    return directory


# --- the processes this module serves when run as a script ------------------------------


def serve_tokens(port: int, cert_path: Path, key_path: Path) -> None:
    """The token service: Basic-authenticated users get the actions they ask for."""
    import jwt
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    chain = [base64.b64encode(certificate.public_bytes(serialization.Encoding.DER)).decode()]
    key = key_path.read_bytes()
    expected = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            parsed = urlparse(self.path)
            if parsed.path == "/ready":
                self._answer(200, {"ready": True})
                return
            if self.headers.get("Authorization") != expected:
                self._answer(401, {"details": "bad credentials"})
                return
            query = parse_qs(parsed.query)
            access = []
            for scope in query.get("scope", []):
                kind, name, actions = scope.split(":")
                access.append({"type": kind, "name": name, "actions": actions.split(",")})
            now = int(time.time())
            claims = {
                "iss": ISSUER,
                "sub": USERNAME,
                "aud": query.get("service", [""])[0],
                "exp": now + 300,
                "nbf": now - 10,
                "iat": now,
                "jti": uuid.uuid4().hex,
                "access": access,
            }
            token = jwt.encode(claims, key, algorithm="ES256", headers={"x5c": chain})
            self._answer(200, {"token": token, "access_token": token, "expires_in": 300})

        def _answer(self, status: int, body: Mapping[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


VALID_MANIFEST = json.dumps(
    {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [],
    },
    sort_keys=True,
).encode()


def serve_broken(port: int) -> None:
    """A registry that misbehaves on purpose, by tag:

    - `bad-digest`: an invalid `Docker-Content-Digest` header;
    - `no-digest-header`: a valid manifest without the header (clients must hash it);
    - `rate-limited`: a valid answer saying `RateLimit-Remaining: 0`;
    - `json-type` / `lying-digest`: a valid manifest typed `application/json`, with a digest
      header that matches it / does not;
    - any digest: a manifest that does not hash to the digest asked for;
    - any other tag: no header, and a body that is not a manifest.
    """

    class Handler(BaseHTTPRequestHandler):
        def _manifest(self, with_body: bool) -> None:
            headers = {"Content-Type": OCI_MANIFEST}
            body = b"<html>this is not a manifest</html>"
            reference = self.path.rsplit("/", 1)[-1]
            if self.path == "/ready":
                body, headers = b"", {}
            elif reference == "bad-digest":
                headers["Docker-Content-Digest"] = "sha256:../../etc/passwd"
            elif reference in ("no-digest-header", "rate-limited") or reference.startswith(
                "sha256:"
            ):
                body = VALID_MANIFEST
            if reference in ("json-type", "lying-digest"):
                body = VALID_MANIFEST
                headers["Content-Type"] = "application/json"
                headers["Docker-Content-Digest"] = digest_of(
                    body if reference == "json-type" else b"other"
                )
            if reference == "rate-limited":
                headers["Docker-Content-Digest"] = digest_of(body)
                headers["RateLimit-Limit"] = "100;w=21600"
                headers["RateLimit-Remaining"] = "0;w=21600"
            self.send_response(200)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if with_body:
                self.wfile.write(body)

        def do_HEAD(self) -> None:
            self._manifest(with_body=False)

        def do_GET(self) -> None:
            self._manifest(with_body=True)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main(argv: Sequence[str]) -> None:
    """`token-service --port P --cert C --key K` or `broken-registry --port P`."""
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["token-service", "broken-registry"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path)
    parser.add_argument("--key", type=Path)
    arguments = parser.parse_args(argv)
    if arguments.mode == "token-service":
        serve_tokens(arguments.port, arguments.cert, arguments.key)
    else:
        serve_broken(arguments.port)


if __name__ == "__main__":
    main(sys.argv[1:])


def registry_fixture(auth: Auth = "none") -> Any:
    """A module-scoped pytest fixture running one registry with `auth` for the whole module."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
        server = start_registry(tmp_path_factory.mktemp(f"registry-{auth}"), auth)
        yield server
        server.stop()

    return fixture


def broken_registry_fixture() -> Any:
    """A module-scoped pytest fixture running the misbehaving registry."""

    @pytest.fixture(scope="module")
    def fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokenRegistry]:
        server = start_broken_registry(tmp_path_factory.mktemp("broken"))
        yield server
        server.stop()

    return fixture
