"""The rotation's closure: every changed node of the lockfile, not only sharp and its pins.

Pure checks (lockfile diff, OSV `MAL-` advisories, install scripts) and the `verify-closure`
step against a real Verdaccio of this module's own, with a changed `sharp`, a changed pin and a
new dependency `@img/colour`, as sharp 0.34 brought in.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from bot.errors import (
    BotError,
    ConfigError,
    InvalidRemoteData,
    RotationHeld,
    ServiceUnavailable,
    StepFailed,
    VerificationFailed,
)
from bot.manifests.locked import LockedTree
from bot.manifests.lockfile import parse_package_lock
from bot.publish import render_body
from bot.sources.http import HttpSource
from bot.sources.npm.models import Dist, PackageVersion
from bot.steps.registry import StepContext, get_step
from bot.verify.closure import (
    NodeChange,
    affected_by_range,
    changed_nodes,
    load_malicious_advisories,
    parse_osv,
    script_problems,
)
from tests.support.processes import free_port
from tests.support.step_context import BaseFiles, make_context, rotation_for
from tests.support.verdaccio import Verdaccio, running_verdaccio

OSV = Path(__file__).parents[1] / "fixtures" / "osv"
LINUX = "@img/sharp-linux-x64"
COLOUR = "@img/colour"


def lock(
    versions: Mapping[str, str], nested: Mapping[str, str] | None = None, *, app: str = "1.0.0"
) -> LockedTree:
    packages: dict[str, Any] = {"": {"name": "app", "version": app}}
    for name, version in versions.items():
        packages[f"node_modules/{name}"] = {"version": version}
    for path, version in (nested or {}).items():
        packages[path] = {"version": version}
    return parse_package_lock(json.dumps({"lockfileVersion": 3, "packages": packages}))


# --- changed nodes ----------------------------------------------------------------------------


def test_changed_nodes_are_every_new_name_and_version() -> None:
    previous = lock({"sharp": "0.33.4", LINUX: "0.33.4", "detect-libc": "2.0.3"})
    new = lock(  # the project's own version bump is not a node
        {"sharp": "0.34.0", LINUX: "0.34.0", "detect-libc": "2.0.3", COLOUR: "1.0.0"},
        nested={f"node_modules/sharp/node_modules/{LINUX}": "0.34.0", "node_modules/x": "1.0.0"},
        app="1.1.0",
    )

    assert changed_nodes(previous, new) == (
        NodeChange(COLOUR, None, "1.0.0"),
        NodeChange(LINUX, "0.33.4", "0.34.0"),
        NodeChange("sharp", "0.33.4", "0.34.0"),
        NodeChange("x", None, "1.0.0"),
    )


def test_a_version_already_locked_elsewhere_is_not_a_change() -> None:
    previous = lock({LINUX: "0.33.4"}, nested={f"node_modules/a/node_modules/{LINUX}": "0.33.5"})
    new = lock({LINUX: "0.33.5"})

    assert changed_nodes(previous, new) == ()


def test_a_nested_change_is_compared_with_the_same_path() -> None:
    previous = lock({LINUX: "0.33.4"}, nested={f"node_modules/a/node_modules/{LINUX}": "0.33.1"})
    new = lock({LINUX: "0.33.4"}, nested={f"node_modules/a/node_modules/{LINUX}": "0.33.2"})

    assert changed_nodes(previous, new) == (NodeChange(LINUX, "0.33.1", "0.33.2"),)


def test_a_moved_package_is_compared_with_its_version_elsewhere() -> None:
    previous = lock({}, nested={f"node_modules/a/node_modules/{LINUX}": "0.33.1"})
    new = lock({LINUX: "0.33.2"})

    assert changed_nodes(previous, new) == (NodeChange(LINUX, "0.33.1", "0.33.2"),)


# --- known-malicious versions -----------------------------------------------------------------


def advisory(
    name: str, *, versions: tuple[str, ...] = (), events: Any = None, id: str = "MAL-2099-1"
) -> dict[str, Any]:
    """An OSV advisory shaped like ossf/malicious-packages' (see fixtures/osv/README.md)."""
    affected: dict[str, Any] = {"package": {"ecosystem": "npm", "name": name}}
    if versions:
        affected["versions"] = list(versions)
    if events is not None:
        affected["ranges"] = [{"type": "SEMVER", "events": events}]
    return {
        "schema_version": "1.5.0",
        "id": id,
        "summary": f"Malicious code in {name} (npm)",
        "affected": [affected],
    }


def test_real_osv_mirror_directory_finds_the_chalk_compromise() -> None:
    advisories = load_malicious_advisories(str(OSV / "malicious"), HttpSource(attempts=1))

    found = advisories.find("chalk", "5.6.1")
    assert found is not None and found.id == "MAL-2025-46969"
    assert advisories.find("chalk", "5.6.0") is None
    assert advisories.find("chalk-template", "5.6.1") is None


def test_a_withdrawn_advisory_in_the_mirror_blocks_nothing() -> None:
    # the whole `osv/` directory of the mirror: malicious/ and withdrawn/ side by side
    advisories = load_malicious_advisories(str(OSV), HttpSource(attempts=1))

    assert [item.id for item in advisories.advisories] == ["MAL-2025-46969"]
    assert advisories.find("@ctrl/plex", "6.0.0") is None


@pytest.mark.parametrize(
    ("events", "version", "affected"),
    [
        ([{"introduced": "0"}], "0.0.1", True),
        ([{"introduced": "1.2.0"}], "1.1.9", False),
        ([{"introduced": "1.2.0"}], "1.2.0", True),
        ([{"introduced": "1.0.0"}, {"fixed": "1.0.3"}], "1.0.2", True),
        ([{"introduced": "1.0.0"}, {"fixed": "1.0.3"}], "1.0.3", False),
        ([{"introduced": "1.0.0"}, {"last_affected": "1.0.3"}], "1.0.3", True),
        ([{"introduced": "1.0.0"}, {"last_affected": "1.0.3"}], "1.0.4", False),
        ([{"introduced": "0"}, {"fixed": "1.0.0"}, {"introduced": "2.0.0"}], "1.5.0", False),
        ([{"introduced": "0"}, {"fixed": "1.0.0"}, {"introduced": "2.0.0"}], "2.0.1", True),
        ([{"fixed": "1.0.3"}], "1.0.0", False),  # nothing introduced: nothing affected
        ([], "1.0.0", False),
    ],
)
def test_osv_semver_ranges(events: Any, version: str, affected: bool) -> None:
    assert affected_by_range(version, events) is affected
    (found,) = parse_osv(advisory("pkg", events=events), source="test")

    assert affected_by_range(version, events) is affected
    assert found.affects("pkg", version) is affected


def test_only_npm_mal_advisories_count() -> None:
    other_ecosystem = advisory("pkg", versions=("1.0.0",))
    other_ecosystem["affected"][0]["package"]["ecosystem"] = "PyPI"
    git_range = advisory("pkg", events=[{"introduced": "0"}], id="MAL-2099-3")
    git_range["affected"][0]["ranges"][0]["type"] = "GIT"
    mixed = advisory("pkg", versions=("2.0.0",), id="MAL-2099-2")
    mixed["affected"].insert(0, "not an object")
    mixed["affected"].insert(1, other_ecosystem["affected"][0])
    found = parse_osv(
        {
            "vulns": [
                advisory("pkg", versions=("1.0.0",), id="GHSA-xxxx-yyyy-zzzz"),
                other_ecosystem,
                git_range,
                mixed,
            ]
        },
        source="test",
    )

    assert [(item.id, sorted(item.versions)) for item in found] == [
        ("MAL-2099-3", []),
        ("MAL-2099-2", ["2.0.0"]),
    ]
    assert not found[0].affects("pkg", "1.0.0")


def _shaped(field: str, value: object) -> dict[str, Any]:
    document = advisory("pkg", versions=("1.0.0",), events=[{"introduced": "0"}])
    affected = document["affected"][0]
    if field == "events":
        affected["ranges"][0]["events"] = value
    else:
        affected[field] = value
    return document


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("versions", "1.0.0", "versions is not a list"),
        ("versions", 5, "versions is not a list"),
        ("ranges", {"type": "SEMVER"}, "ranges is not a list"),
        ("events", {"introduced": "0"}, "range events is not a list"),
        ("events", ["0"], "a range event is not an object"),
        ("events", [{"introduced": "1.2"}], "introduced '1.2' is not a SemVer version"),
        ("events", [{"introduced": 0}], "introduced 0 is not a SemVer version"),
        ("events", [{"introduced": "0"}, {"fixed": "v2"}], "fixed 'v2' is not a SemVer version"),
        ("events", [{"last_affected": None, "fixed": "x"}], "fixed 'x' is not a SemVer version"),
        (
            "events",
            [{"introduced": "0"}, {"last_affected": "1.x"}],
            "last_affected '1.x' is not a SemVer version",
        ),
    ],
)
def test_a_malformed_npm_advisory_is_a_one_line_config_error(
    field: str, value: object, reason: str
) -> None:
    """Refused when read, naming the file and the advisory, never a crash mid-rotation."""
    with pytest.raises(ConfigError) as caught:
        parse_osv(_shaped(field, value), source="mirror/MAL-2099-1.json")
    assert caught.value.message == (
        f"mirror/MAL-2099-1.json: OSV advisory MAL-2099-1: {reason}; fix or remove the advisory"
    )


def test_a_document_without_id_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="not an OSV advisory"):
        parse_osv([{"affected": []}], source="mirror.json")


def test_missing_advisories_location_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_malicious_advisories(str(tmp_path / "nowhere"), HttpSource(attempts=1))
    assert caught.value.message == (
        f"{tmp_path / 'nowhere'}: no OSV advisories file or directory there; fix "
        "ROTATION_BOT_MALICIOUS_ADVISORIES or unset it"
    )


@pytest.mark.parametrize(
    ("write", "message"),
    [
        (lambda path: path.mkdir(), "cannot read the OSV advisories"),
        (lambda path: path.write_text("{not json"), "the OSV advisories are not valid JSON"),
        (lambda path: path.write_text('[{"affected": []}]'), "not an OSV advisory (no id)"),
    ],
    ids=["unreadable", "not-json", "no-id"],
)
def test_a_bad_file_in_the_mirror_is_named(tmp_path: Path, write: Any, message: str) -> None:
    write(tmp_path / "MAL-2099-9.json")

    with pytest.raises(ConfigError) as caught:
        load_malicious_advisories(str(tmp_path), HttpSource(attempts=1))
    assert caught.value.message.startswith(f"{tmp_path / 'MAL-2099-9.json'}: {message}")


def test_no_location_means_no_advisories() -> None:
    assert load_malicious_advisories(None, HttpSource(attempts=1)).advisories == ()


class _Advisories(BaseHTTPRequestHandler):
    status = 200
    body = b""
    accept: str | None = None  # what the last request asked for

    def do_GET(self) -> None:
        type(self).accept = self.headers.get("Accept")
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def advisory_server() -> Iterator[tuple[str, type[_Advisories]]]:
    handler = type("Handler", (_Advisories,), {})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/advisories.json", handler
    finally:
        server.shutdown()
        server.server_close()


def test_advisories_from_a_url(advisory_server: tuple[str, type[_Advisories]]) -> None:
    url, handler = advisory_server
    handler.body = json.dumps({"vulns": [advisory(COLOUR, versions=("1.0.0",))]}).encode()

    advisories = load_malicious_advisories(url, HttpSource(attempts=1))

    assert advisories.find(COLOUR, "1.0.0") is not None
    assert handler.accept == "application/json"


def test_advisories_from_a_url_have_their_own_size_cap(
    advisory_server: tuple[str, type[_Advisories]],
) -> None:
    # an OSV dump is far larger than most JSON the bot reads: the source's own cap does not apply
    url, handler = advisory_server
    handler.body = json.dumps([advisory(COLOUR, versions=("1.0.0",))] * 20).encode()

    advisories = load_malicious_advisories(url, HttpSource(attempts=1, limit=1024))

    assert len(advisories.advisories) == 20


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        (b"{not json", InvalidRemoteData, "{host} answered with invalid JSON"),
        (b'[{"affected": []}]', ConfigError, "{url}: not an OSV advisory (no id)"),
    ],
    ids=["not-json", "no-id"],
)
def test_bad_advisories_from_a_url_are_named(
    advisory_server: tuple[str, type[_Advisories]],
    body: bytes,
    error: type[BotError],
    message: str,
) -> None:
    url, handler = advisory_server
    handler.body = body

    with pytest.raises(error) as caught:
        load_malicious_advisories(url, HttpSource(attempts=1))
    assert caught.value.message == message.format(
        url=url, host=url.removesuffix("/advisories.json")
    )


def test_an_https_advisories_url_is_fetched() -> None:
    # nothing listens there: the request is made (and fails as unreachable), not read as a path
    host = f"https://127.0.0.1:{free_port()}"

    with pytest.raises(ServiceUnavailable) as caught:
        load_malicious_advisories(f"{host}/advisories.json", HttpSource(attempts=1))
    assert caught.value.message == (
        f"{host} is unreachable (ConnectError); check the URL and the network"
    )


@pytest.mark.parametrize(
    ("status", "error", "message"),
    [
        (404, ConfigError, "{url}: no OSV advisories there (HTTP 404); fix {setting} or unset it"),
        (410, ConfigError, "{url}: no OSV advisories there (HTTP 410); fix {setting} or unset it"),
        (
            403,
            ServiceUnavailable,
            "{host} answered HTTP 403 for the OSV advisories; try again later",
        ),
    ],
)
def test_advisories_url_failing(
    advisory_server: tuple[str, type[_Advisories]],
    status: int,
    error: type[BotError],
    message: str,
) -> None:
    url, handler = advisory_server
    handler.status = status

    with pytest.raises(error) as caught:
        load_malicious_advisories(url, HttpSource(attempts=1))
    assert caught.value.message == message.format(
        url=url,
        host=url.removesuffix("/advisories.json"),
        setting="ROTATION_BOT_MALICIOUS_ADVISORIES",
    )


# --- install scripts --------------------------------------------------------------------------


def manifest(name: str, version: str, **scripts: str) -> PackageVersion:
    return PackageVersion(
        name=name,
        version=version,
        dist=Dist(tarball="https://registry.example/x.tgz", integrity="sha512-x"),
        install_scripts=scripts,
    )


SHARP_INSTALL = [("sharp", "<=0.34", "install")]


@pytest.mark.parametrize(
    ("previous", "new", "allowed", "problems"),
    [
        (None, manifest("a", "1.0.0"), [], []),
        (
            None,
            manifest("a", "1.0.0", postinstall="node x"),
            [],
            ["a@1.0.0 adds a `postinstall` script: `node x`"],
        ),
        (manifest("a", "1.0.0", install="x"), manifest("a", "1.0.1", install="x"), [], []),
        (
            manifest("a", "1.0.0", install="x"),
            manifest("a", "1.0.1", install="y"),
            [],
            ["a@1.0.1 changes a `install` script: `y`"],
        ),
        (
            manifest("sharp", "0.33.4", install="a"),
            manifest("sharp", "0.34.1", install="b"),
            SHARP_INSTALL,
            [],
        ),
        (
            manifest("sharp", "0.34.1", install="a"),
            manifest("sharp", "0.35.0", install="b"),
            SHARP_INSTALL,
            ["sharp@0.35.0 changes a `install` script: `b`"],
        ),
        (
            None,
            manifest("sharp", "0.34.1", preinstall="b"),
            SHARP_INSTALL,
            ["sharp@0.34.1 adds a `preinstall` script: `b`"],
        ),
        (
            None,
            manifest("sharpx", "0.34.1", install="b"),
            SHARP_INSTALL,
            ["sharpx@0.34.1 adds a `install` script: `b`"],
        ),
        (
            manifest("sharp", "0.33.4", install="a"),
            manifest("sharp", "0.34.1", install="b", postinstall="c"),
            SHARP_INSTALL,
            ["sharp@0.34.1 adds a `postinstall` script: `c`"],
        ),
    ],
    ids=[
        "none",
        "added",
        "same",
        "changed",
        "allowed",
        "outside-range",
        "other-script",
        "other-package",
        "allowed-beside-added",
    ],
)
def test_install_scripts(
    previous: PackageVersion | None, new: PackageVersion, allowed: Any, problems: list[str]
) -> None:
    assert script_problems(previous, new, allowed) == problems


# --- the step ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def npm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Verdaccio]:
    with running_verdaccio(tmp_path_factory.mktemp("closure")) as server:
        server.publish("sharp", "0.33.4", extra={"scripts": {"install": "node install/check"}})
        server.publish("sharp", "0.33.5", extra={"scripts": {"install": "node install/check.js"}})
        server.publish("sharp", "0.35.0", extra={"scripts": {"install": "node install/fetch.js"}})
        for version in ("0.33.4", "0.33.5"):
            server.publish(LINUX, version, extra={"os": ["linux"], "cpu": ["x64"]})
        server.publish(COLOUR, "1.0.0")
        server.publish(COLOUR, "1.0.1", extra={"scripts": {"postinstall": "node setup_bun.js"}})
        server.publish("@img/unpublished", "1.0.0")
        for version in ("1.0.0", "1.0.1"):
            server.publish("@img/same", version, extra={"scripts": {"install": "node same.js"}})
            server.publish("@img/timeless", version)
        server.publish("@img/unpublished", "1.0.1")
        yield server


def context(
    tmp_path: Path,
    npm: Verdaccio,
    new: Mapping[str, str],
    *,
    days_later: float = 10,
    advisories: str | None = None,
    config: str | None = None,
    previous: Mapping[str, str] | None = None,
) -> StepContext:
    def lockfile(versions: Mapping[str, str]) -> str:
        packages = {f"node_modules/{name}": {"version": v} for name, v in versions.items()}
        return json.dumps({"lockfileVersion": 3, "packages": {"": {"name": "app"}, **packages}})

    (tmp_path / "package-lock.json").write_text(lockfile(new))
    base = {"sharp": "0.33.4", LINUX: "0.33.4", **(previous or {})}
    workspace = BaseFiles({"package-lock.json": lockfile(base)})
    ctx = make_context(
        tmp_path,
        npm.url,
        rotation_for("0.33.5", {LINUX: ("0.33.4", "0.33.5")}),
        config=config,
        workspace=workspace,
    )
    later = datetime.now(UTC) + timedelta(days=days_later)
    ctx.services = replace(
        ctx.services,
        clock=lambda: later,
        settings=replace(ctx.services.settings, malicious_advisories=advisories),
    )
    return ctx


ROTATED = {"sharp": "0.33.5", LINUX: "0.33.5", COLOUR: "1.0.0"}


def test_step_passes_every_changed_node(tmp_path: Path, npm: Verdaccio) -> None:
    result = get_step("verify-closure")(context(tmp_path, npm, ROTATED))

    assert result.status == "passed"
    assert [
        (n["name"], n["previous_version"], n["new_version"]) for n in result.evidence["nodes"]
    ] == [
        (COLOUR, None, "1.0.0"),
        (LINUX, "0.33.4", "0.33.5"),
        ("sharp", "0.33.4", "0.33.5"),
    ]
    # sharp's changed `install` script is the runbook's allowed one
    assert result.evidence["nodes"][2]["install_scripts"] == (("install", "node install/check.js"),)
    assert (result.evidence["advisories"], result.evidence["minimum_age"]) == (
        None,
        "3 days",
    )


def test_the_proposal_lists_every_changed_node(tmp_path: Path, npm: Verdaccio) -> None:
    mirror = tmp_path / "osv"
    mirror.mkdir()
    (mirror / "MAL-2099-1.json").write_text(json.dumps(advisory("left-pad", versions=("9.9.9",))))
    ctx = context(tmp_path, npm, ROTATED, advisories=str(mirror))
    result = replace(get_step("verify-closure")(ctx), kind="verify-closure")

    body = render_body(ctx.runbook, ctx.rotation, ctx.outputs, [result], "0123456789abcdef")

    assert ctx.outputs.closure is not None
    day = {node.name: (node.published_at or "")[:10] for node in ctx.outputs.closure.nodes}
    start = body.index("Changed packages in the lockfile")
    assert body[start:].splitlines()[:6] == [
        "Changed packages in the lockfile (3): none is in the 1 OSV `MAL-` advisories or "
        "unpublished; none adds or changes an install script the runbook does not allow; each "
        "is older than 3 days.",
        "",
        "| Package | Version | Published | Install scripts (unchanged or allowed) |",
        "| --- | --- | --- | --- |",
        f"| `{COLOUR}` | — → `1.0.0` | {day[COLOUR]} | — |",
        f"| `{LINUX}` | `0.33.4` → `0.33.5` | {day[LINUX]} | — |",
    ]
    assert body[start:].splitlines()[6] == (
        f"| `sharp` | `0.33.4` → `0.33.5` | {day['sharp']} | `install`: `node install/check.js` |"
    )


def test_the_proposal_says_when_no_advisory_source_is_configured(
    tmp_path: Path, npm: Verdaccio
) -> None:
    zero = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n"
    ctx = context(tmp_path, npm, ROTATED, config=zero)
    get_step("verify-closure")(ctx)

    body = render_body(ctx.runbook, ctx.rotation, ctx.outputs, [], "0123456789abcdef")

    assert (
        "Changed packages in the lockfile (3): no OSV advisory source is configured "
        "(`ROTATION_BOT_MALICIOUS_ADVISORIES`), so only unpublished versions were looked for; "
        "none adds or changes an install script the runbook does not allow; no minimum release "
        "age applies." in body
    )


def test_the_proposal_says_when_the_closure_was_not_checked(tmp_path: Path, npm: Verdaccio) -> None:
    ctx = context(tmp_path, npm, ROTATED)

    body = render_body(ctx.runbook, ctx.rotation, ctx.outputs, [], "0123456789abcdef")

    assert "Changed packages in the lockfile: not checked, `verify-closure` did not run." in body


def test_a_young_new_dependency_holds_the_rotation(tmp_path: Path, npm: Verdaccio) -> None:
    with pytest.raises(RotationHeld) as caught:
        get_step("verify-closure")(context(tmp_path, npm, ROTATED, days_later=1))

    assert caught.value.message.startswith(f"rotation held: {COLOUR}@1.0.0 was published 20")
    assert "younger than the minimum release age 3 days" in caught.value.message
    assert len(caught.value.fields["problems"]) == 3


def test_a_configured_zero_age_lets_young_nodes_through(tmp_path: Path, npm: Verdaccio) -> None:
    zero = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n"

    result = get_step("verify-closure")(context(tmp_path, npm, ROTATED, days_later=0, config=zero))

    assert result.status == "passed"


def test_a_configured_age_replaces_the_runbook_one(tmp_path: Path, npm: Verdaccio) -> None:
    week = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 7d\n"

    with pytest.raises(RotationHeld, match="minimum release age 7 days"):
        get_step("verify-closure")(context(tmp_path, npm, ROTATED, days_later=5, config=week))


def test_a_new_postinstall_script_blocks_the_rotation(tmp_path: Path, npm: Verdaccio) -> None:
    with pytest.raises(VerificationFailed) as caught:
        get_step("verify-closure")(context(tmp_path, npm, {**ROTATED, COLOUR: "1.0.1"}))

    assert (
        f"{COLOUR}@1.0.1 adds a `postinstall` script: `node setup_bun.js`" in caught.value.message
    )
    assert "do not bypass" in caught.value.message


def test_sharp_beyond_the_allowed_range_may_not_change_its_install_script(
    tmp_path: Path, npm: Verdaccio
) -> None:
    with pytest.raises(VerificationFailed, match="sharp@0.35.0 changes a `install` script"):
        get_step("verify-closure")(context(tmp_path, npm, {**ROTATED, "sharp": "0.35.0"}))


def test_a_known_malicious_node_blocks_the_rotation(tmp_path: Path, npm: Verdaccio) -> None:
    mirror = tmp_path / "osv" / "npm" / COLOUR
    mirror.mkdir(parents=True)
    (mirror / "MAL-2099-7.json").write_text(
        json.dumps(advisory(COLOUR, versions=("1.0.0",), id="MAL-2099-7"))
    )

    with pytest.raises(
        VerificationFailed, match=rf"{COLOUR}@1.0.0 is known-malicious \(MAL-2099-7\)"
    ):
        get_step("verify-closure")(
            context(tmp_path, npm, ROTATED, advisories=str(tmp_path / "osv"))
        )


def test_an_unpublished_version_blocks_the_rotation(tmp_path: Path, npm: Verdaccio) -> None:
    packument = npm.storage / "@img" / "unpublished" / "package.json"
    data = json.loads(packument.read_text())
    del data["versions"]["1.0.1"]
    packument.write_text(json.dumps(data))

    with pytest.raises(VerificationFailed, match="@img/unpublished@1.0.1 was unpublished"):
        get_step("verify-closure")(context(tmp_path, npm, {**ROTATED, "@img/unpublished": "1.0.1"}))


def test_advisories_from_a_single_file() -> None:
    path = OSV / "malicious" / "npm" / "chalk" / "MAL-2025-46969.json"

    advisories = load_malicious_advisories(str(path), HttpSource(attempts=1))

    assert [item.id for item in advisories.advisories] == ["MAL-2025-46969"]


def _drop_from_storage(npm: Verdaccio, name: str, version: str, field: str) -> None:
    packument = npm.storage / name / "package.json"
    data = json.loads(packument.read_text())
    del data[field][version]
    packument.write_text(json.dumps(data))


def test_a_node_without_publish_time_holds_the_rotation(tmp_path: Path, npm: Verdaccio) -> None:
    _drop_from_storage(npm, "@img/timeless", "1.0.1", "time")

    with pytest.raises(RotationHeld, match="@img/timeless@1.0.1 has no publish time"):
        get_step("verify-closure")(context(tmp_path, npm, {**ROTATED, "@img/timeless": "1.0.1"}))


def test_a_blocked_node_is_an_incident_even_when_another_is_young(
    tmp_path: Path, npm: Verdaccio
) -> None:
    young_and_scripted = {**ROTATED, COLOUR: "1.0.1"}

    with pytest.raises(VerificationFailed, match="adds a `postinstall` script"):
        get_step("verify-closure")(context(tmp_path, npm, young_and_scripted, days_later=0))


def test_an_unchanged_script_passes_and_counts_as_added_when_the_old_version_is_gone(
    tmp_path: Path, npm: Verdaccio
) -> None:
    same = {**ROTATED, "@img/same": "1.0.1"}
    before = {"@img/same": "1.0.0"}
    assert get_step("verify-closure")(context(tmp_path, npm, same, previous=before)).status == (
        "passed"
    )
    _drop_from_storage(npm, "@img/same", "1.0.0", "versions")

    with pytest.raises(VerificationFailed, match="@img/same@1.0.1 adds a `install` script"):
        get_step("verify-closure")(context(tmp_path, npm, same, previous=before))


def test_a_vanished_lockfile_fails_the_step(tmp_path: Path, npm: Verdaccio) -> None:
    ctx = context(tmp_path, npm, ROTATED)
    (tmp_path / "package-lock.json").unlink()

    with pytest.raises(StepFailed, match="package-lock.json disappeared from the worktree"):
        get_step("verify-closure")(ctx)
