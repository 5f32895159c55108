"""The OCI client against a real distribution registry on 127.0.0.1 (no auth, htpasswd Basic,
Bearer tokens from a local token service) and against a registry that misbehaves."""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bot.config import Settings
from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable
from bot.sources.http import Body, HttpSource
from bot.sources.oci.client import OciClient, make_oci_client
from bot.sources.oci.credentials import load_docker_credentials
from bot.sources.oci.models import TagNotFound, platform_matches
from tests.support.oci_registry import (
    PASSWORD,
    USERNAME,
    BrokenRegistry,
    Registry,
    broken_registry_fixture,
    docker_config,
    registry_fixture,
)
from tests.support.processes import free_port

plain = registry_fixture()
basic = registry_fixture("htpasswd")
token = registry_fixture("token")
broken = broken_registry_fixture()


class RecordingHttp(HttpSource):
    """The real HttpSource, remembering each request's method and path."""

    def __init__(self) -> None:
        super().__init__(attempts=2)
        self.calls: list[tuple[str, str]] = []

    def fetch(self, method: str, url: str, **options: object) -> Body:  # type: ignore[override]
        self.calls.append((method, url.split("/", 3)[-1]))
        return super().fetch(method, url, **options)  # type: ignore[arg-type]


def client_for(environ: Mapping[str, str] | None = None, **settings: object) -> OciClient:
    return make_oci_client(Settings(**settings), environ or {}, http=RecordingHttp())  # type: ignore[arg-type]


def calls(client: OciClient) -> list[tuple[str, str]]:
    assert isinstance(client.http, RecordingHttp)
    return client.http.calls


def test_a_tag_resolves_with_one_head_and_moves_when_pushed_again(plain: Registry) -> None:
    first = plain.push_image("resolve/app", "1.0", "first")
    client = client_for()

    head = client.resolve(plain.host, "resolve/app", "1.0")

    assert head.digest == first and not head.is_index
    assert calls(client) == [("HEAD", "v2/resolve/app/manifests/1.0")]
    moved = plain.push_image("resolve/app", "1.0", "second")
    assert moved != first
    assert client.resolve(plain.host, "resolve/app", "1.0").digest == moved


def test_a_multi_arch_tag_pins_the_index_digest_and_reports_platforms_and_dates(
    plain: Registry,
) -> None:
    index = plain.push_index(
        "resolve/multi",
        "20",
        "multi",
        platforms=("linux/amd64", "linux/arm64/v8"),
        created={
            "linux/amd64": "2024-03-01T10:00:00.123456789Z",
            "linux/arm64/v8": "2024-02-01T10:00:00Z",
        },
    )
    client = client_for()

    head = client.resolve(plain.host, "resolve/multi", "20")
    arm = client.details(plain.host, "resolve/multi", head.digest, "linux/arm64")
    amd = client.details(plain.host, "resolve/multi", head.digest, "linux/amd64")
    missing = client.details(plain.host, "resolve/multi", head.digest, "linux/s390x")

    assert head.digest == index and head.is_index
    assert arm.platforms == ("linux/amd64", "linux/arm64/v8")
    assert arm.created == datetime(2024, 2, 1, 10, tzinfo=UTC)
    assert amd.created == datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert missing.created is None
    # the index is fetched once (content-addressed cache), each config once
    methods = [method for method, _ in calls(client)]
    assert methods.count("GET") == 5 and methods.count("HEAD") == 1


def test_a_single_platform_image_reports_its_own_platform(plain: Registry) -> None:
    digest = plain.push_image("resolve/arm", "1", "arm", platform="linux/arm/v7")
    details = client_for().details(plain.host, "resolve/arm", digest, None)

    assert details.platforms == ("linux/arm/v7",)
    assert details.created is not None


def test_a_missing_tag_and_an_unreachable_registry_are_told_apart(plain: Registry) -> None:
    client = client_for()
    with pytest.raises(TagNotFound, match="no manifest for"):
        client.resolve(plain.host, "resolve/none", "9.9")
    nobody = f"127.0.0.1:{free_port()}"
    with pytest.raises(ServiceUnavailable, match="unreachable"):
        client.resolve(nobody, "library/node", "20")


def test_basic_auth_uses_the_docker_config(basic: Registry, tmp_path: Path) -> None:
    digest = basic.push_image("private/app", "1", "basic")
    with pytest.raises(ServiceUnavailable, match="needs credentials"):
        client_for().resolve(basic.host, "private/app", "1")

    config = docker_config(tmp_path / "docker", {f"http://{basic.host}": (USERNAME, PASSWORD)})
    client = client_for({"DOCKER_CONFIG": str(config)})

    assert client.resolve(basic.host, "private/app", "1").digest == digest
    assert client.details(basic.host, "private/app", digest, None).created is not None


def test_bearer_tokens_come_from_the_realm_with_the_docker_config_credentials(
    token: Registry, tmp_path: Path
) -> None:
    digest = token.push_index("private/node", "20", "token")
    with pytest.raises(ServiceUnavailable, match="refused access"):
        client_for().resolve(token.host, "private/node", "20")

    config = docker_config(tmp_path / "docker", {token.host: (USERNAME, PASSWORD)})
    client = client_for({"DOCKER_CONFIG": str(config)})
    head = client.resolve(token.host, "private/node", "20")
    client.details(token.host, "private/node", head.digest, "linux/amd64")

    assert head.digest == digest
    paths = [path for _, path in calls(client)]
    # one challenge, one token, then the token is reused for every later request
    assert sum(path.startswith("token?") for path in paths) == 1
    assert "scope=repository%3Aprivate%2Fnode%3Apull" in next(p for p in paths if "token?" in p)


def test_wrong_credentials_are_refused_clearly(basic: Registry, tmp_path: Path) -> None:
    basic.push_image("private/wrong", "1", "wrong")
    config = docker_config(tmp_path / "docker", {basic.host: (USERNAME, "not-the-password")})

    with pytest.raises(ServiceUnavailable, match="refused access") as caught:
        client_for({"DOCKER_CONFIG": str(config)}).resolve(basic.host, "private/wrong", "1")
    assert "not-the-password" not in str(caught.value)


def test_a_mirror_serves_lookups_for_docker_hub(plain: Registry) -> None:
    digest = plain.push_image("library/node", "20-mirror", "mirrored")
    client = client_for(registry_mirrors=(("docker.io", plain.host),))

    head = client.resolve("registry-1.docker.io", "library/node", "20-mirror")

    assert head.digest == digest
    assert client.endpoint("registry-1.docker.io").base_url == f"http://{plain.host}"


def test_mirror_prefix_and_schemes(tmp_path: Path) -> None:
    client = client_for(
        insecure_registries=("registry.internal:5000",),
        registry_mirrors=(("ghcr.io", "https://cache.example.com/ghcr"),),
    )

    assert client.endpoint("ghcr.io").url("acme/app", "manifests/1") == (
        "https://cache.example.com/v2/ghcr/acme/app/manifests/1"
    )
    assert client.endpoint("cgr.dev").base_url == "https://cgr.dev"
    assert client.endpoint("registry.internal:5000").base_url == "http://registry.internal:5000"
    assert client.endpoint("localhost:5000").base_url == "http://localhost:5000"
    assert client.endpoint("127.0.0.2:80").base_url == "http://127.0.0.2:80"


def test_garbage_from_a_registry_is_refused(broken: BrokenRegistry) -> None:
    client = client_for()
    with pytest.raises(InvalidRemoteData, match="expected sha256"):
        client.resolve(broken.host, "acme/app", "bad-digest")
    with pytest.raises(InvalidRemoteData, match="invalid JSON"):
        client.resolve(broken.host, "acme/app", "garbage")
    with pytest.raises(InvalidRemoteData, match="hashes to"):
        client.manifest(broken.host, "acme/app", "sha256:" + "1" * 64)


def test_a_missing_digest_header_falls_back_to_hashing_the_manifest(
    broken: BrokenRegistry,
) -> None:
    client = client_for()
    head = client.resolve(broken.host, "acme/app", "no-digest-header")

    assert head.digest.startswith("sha256:") and len(head.digest) == 71
    assert [method for method, _ in calls(client)] == ["HEAD", "GET"]
    # the manifest is cached by its digest: no second GET
    assert client.manifest(broken.host, "acme/app", head.digest).config_digest is not None
    assert len(calls(client)) == 2


def test_a_sloppy_content_type_is_checked_against_the_manifest_itself(
    broken: BrokenRegistry,
) -> None:
    client = client_for()
    head = client.resolve(broken.host, "acme/app", "json-type")

    assert head.media_type == "application/vnd.oci.image.manifest.v1+json"
    assert [method for method, _ in calls(client)] == ["HEAD", "GET"]
    with pytest.raises(InvalidRemoteData, match="hashes to"):
        client.resolve(broken.host, "acme/app", "lying-digest")


def test_an_exhausted_rate_limit_stops_gets_but_not_heads(broken: BrokenRegistry) -> None:
    client = client_for()
    head = client.resolve(broken.host, "acme/app", "rate-limited")
    with pytest.raises(ServiceUnavailable, match="rate limit is used up"):
        client.manifest(broken.host, "acme/app", head.digest)
    assert [method for method, _ in calls(client)] == ["HEAD"]
    assert client.resolve(broken.host, "acme/app", "rate-limited").digest == head.digest


def test_docker_config_credentials(tmp_path: Path) -> None:
    auth = base64.b64encode(b"me:secret-password").decode()
    (tmp_path / "config.json").write_text(
        json.dumps(
            {
                "auths": {
                    "https://index.docker.io/v1/": {"auth": auth},
                    "ghcr.io": {"username": "bot", "password": "ghcr-token-value"},
                    "empty.example.com": {},
                },
                "credsStore": "desktop",
            }
        )
    )
    credentials = load_docker_credentials({"DOCKER_CONFIG": str(tmp_path)})

    assert set(credentials) == {"registry-1.docker.io", "ghcr.io"}
    assert credentials["registry-1.docker.io"].username == "me"
    assert credentials["ghcr.io"].password == "ghcr-token-value"
    assert load_docker_credentials({"HOME": str(tmp_path / "nobody")}) == {}
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"x.io": {"auth": "%%%"}}}))
    with pytest.raises(ConfigError, match="not base64"):
        load_docker_credentials({"DOCKER_CONFIG": str(tmp_path)})
    (tmp_path / "config.json").write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_docker_credentials({"DOCKER_CONFIG": str(tmp_path)})


@pytest.mark.parametrize(
    ("wanted", "offered", "matches"),
    [
        ("linux/amd64", "linux/amd64", True),
        ("linux/arm64", "linux/arm64/v8", True),
        ("linux/arm64/v8", "linux/arm64", True),
        ("linux/arm/v7", "linux/arm/v6", False),
        ("linux/amd64", "windows/amd64", False),
    ],
)
def test_platform_matching(wanted: str, offered: str, matches: bool) -> None:
    assert platform_matches(wanted, offered) is matches
