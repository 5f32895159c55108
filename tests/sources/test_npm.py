"""npm settings the way .npmrc users expect, and the registry client against real Verdaccio."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest

from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable
from bot.sources.http import HttpSource
from bot.sources.npm.registry import NpmRegistry
from bot.sources.npm.settings import NpmSettings, load_npm_settings
from tests.support.verdaccio import Verdaccio


def test_npmrc_layers_variables_scopes_and_credentials(tmp_path: Path) -> None:
    user = tmp_path / "npmrc"
    user.write_text("registry=https://user.example/\n//npm.corp.example/:_authToken=${NPM_TOKEN}\n")
    settings = load_npm_settings(
        {"NPM_CONFIG_USERCONFIG": str(user), "NPM_TOKEN": "tok-123456"},
        project_npmrc="@img:registry=https://npm.corp.example/\n; comment\n",
    )
    assert settings.registry == "https://user.example/"
    assert settings.registry_for("@img/sharp-linux-x64") == "https://npm.corp.example/"
    assert settings.registry_for("sharp") == "https://user.example/"
    assert settings.auth_headers("https://npm.corp.example/@img%2fsharp") == {
        "Authorization": "Bearer tok-123456"
    }
    # the token is never sent to another host
    assert settings.auth_headers("https://user.example/sharp") == {}
    env_wins = load_npm_settings(
        {
            "NPM_CONFIG_USERCONFIG": str(user),
            "NPM_TOKEN": "x" * 8,
            "NPM_CONFIG_REGISTRY": "http://127.0.0.1:4873",
        }
    )
    assert env_wins.registry == "http://127.0.0.1:4873/"


def test_missing_variable_and_bad_registry_are_config_errors(tmp_path: Path) -> None:
    user = tmp_path / "npmrc"
    user.write_text("//r.example/:_authToken=${NPM_TOKEN}\n")
    with pytest.raises(ConfigError, match=r"\$\{NPM_TOKEN\} is used but not set"):
        load_npm_settings({"NPM_CONFIG_USERCONFIG": str(user)})
    user.write_text("registry=ftp://r.example\n")
    with pytest.raises(ConfigError, match="must be an http"):
        load_npm_settings({"NPM_CONFIG_USERCONFIG": str(user)})


def test_userconfig_for_npm_turns_scripts_off() -> None:
    text = NpmSettings(credentials=(("//r/", "_authToken", "t0ken"),)).userconfig(
        omit_resolved=True
    )
    assert "ignore-scripts=true" in text and "//r/:_authToken=t0ken" in text
    assert "omit-lockfile-registry-resolved=true" in text


def test_packument_is_cached_with_conditional_requests(tmp_path: Path, registry: Verdaccio) -> None:
    http = HttpSource()
    settings = NpmSettings(registry=registry.url)
    first = NpmRegistry(settings, http, cache_dir=tmp_path)
    assert "0.33.4" in first.packument("sharp").versions
    second = NpmRegistry(settings, http, cache_dir=tmp_path)
    before = http.request_count
    assert second.packument("sharp").versions == first.packument("sharp").versions
    assert http.request_count == before + 1  # one conditional request answered 304
    assert list(tmp_path.glob("*.json"))


def test_tarball_hash_streams_and_caps(registry: Verdaccio) -> None:
    npm = NpmRegistry(NpmSettings(registry=registry.url), HttpSource())
    manifest = npm.packument("@img/sharp-linux-x64").manifest("0.33.5")
    digest = npm.hash_tarball(manifest.dist.tarball)
    assert digest.integrity == manifest.dist.integrity and digest.size > 0
    with pytest.raises(InvalidRemoteData, match="cap"):
        npm.hash_tarball(manifest.dist.tarball, limit=10)


def test_manifest_validation_refuses_bad_integrity_and_tarball_urls() -> None:
    from bot.sources.npm.models import Packument

    def one(dist: dict[str, str]) -> Packument:
        return Packument(
            "x", {"versions": {"1.0.0": {"name": "x", "version": "1.0.0", "dist": dist}}}, host="h"
        )

    with pytest.raises(InvalidRemoteData, match="integrity"):
        one({"tarball": "https://h/x.tgz", "integrity": "sha1-abc"}).manifest("1.0.0")
    with pytest.raises(InvalidRemoteData, match="not an http"):
        one({"tarball": "file:///etc/passwd", "integrity": "sha512-" + "A" * 86 + "=="}).manifest(
            "1.0.0"
        )


def test_server_errors_are_retried_then_reported(tmp_path: Path) -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503, headers={"retry-after": "0"})

    http = HttpSource(httpx.Client(transport=httpx.MockTransport(handler)))
    npm = NpmRegistry(NpmSettings(registry="https://flaky.example/"), http)

    with pytest.raises(ServiceUnavailable, match="https://flaky.example answered HTTP 503 3 times"):
        npm.packument("sharp")
    assert len(calls) == 3


def test_unknown_host_is_not_retried() -> None:
    http = HttpSource()
    npm = NpmRegistry(NpmSettings(registry="https://no-such-host.invalid/"), http)
    with pytest.raises(ServiceUnavailable, match="https://no-such-host.invalid is unreachable"):
        npm.packument("sharp")
    assert http.request_count == 1


def test_a_repository_npmrc_contributes_only_allowlisted_keys(tmp_path: Path) -> None:
    project = (
        "registry=https://mirror.example/\n"
        "@img:registry=https://img.example/\n"
        "legacy-peer-deps=true\n"
        "git=./tools/git\n"
        "proxy=http://attacker.example/\n"
        "strict-ssl=false\n"
        "//img.example/:_authToken=committed-token\n"
        "@x:registry=https://x.example/${SECRET}/\n"
    )
    settings = load_npm_settings({"SECRET": "s3cret", "HOME": str(tmp_path)}, project_npmrc=project)
    assert settings.project.values == (
        ("registry", "https://mirror.example/"),
        ("@img:registry", "https://img.example/"),
        ("legacy-peer-deps", "true"),
    )
    assert settings.project.dropped == (
        "//img.example/:_authToken",
        "@x:registry",
        "git",
        "proxy",
        "strict-ssl",
    )
    assert settings.credentials == () and settings.network == ()
    assert "s3cret" not in settings.project.text() + settings.userconfig(omit_resolved=False)
    allowed = load_npm_settings(
        {"SECRET": "s3cret", "HOME": str(tmp_path)},
        project_npmrc="@x:registry=https://x.example/${SECRET}/\n",
        project_variables=("SECRET",),
    )
    assert allowed.registry_for("@x/y") == "https://x.example/s3cret/"


@pytest.mark.parametrize(
    ("status", "reason"),
    [
        (
            401,
            "refused access to sharp (HTTP 401); check the registry token in the operator's npm "
            "settings (NPM_CONFIG_USERCONFIG)",
        ),
        (
            403,
            "refused access to sharp (HTTP 403); check the registry token in the operator's npm "
            "settings (NPM_CONFIG_USERCONFIG)",
        ),
        (418, "answered HTTP 418 for sharp; try again later"),
    ],
)
def test_a_refused_packument_points_at_the_operator_s_credentials(status: int, reason: str) -> None:
    class Refusing(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Refusing)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        npm = NpmRegistry(NpmSettings(registry=url + "/"), HttpSource(attempts=1))
        with pytest.raises(ServiceUnavailable) as caught:
            npm.packument("sharp")
        assert caught.value.message == f"{url} {reason}"
    finally:
        server.shutdown()
        server.server_close()
