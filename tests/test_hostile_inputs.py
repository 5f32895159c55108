"""Generated hostile inputs (issue 10): malformed manifests, lockfiles, repository configs,
.npmrc files, webhook payloads and registry answers never crash the bot.

A crash is anything but the bot's own one-line error (`BotError`): a traceback (`KeyError`,
`TypeError`, `RecursionError` …) from a parser or a planner fed what a repository writer or a
registry can send.  Each property runs `EXAMPLES` generated cases: 150 in the suite, more with
`ROTATION_BOT_FUZZ_EXAMPLES=1000 pytest tests/test_hostile_inputs.py --hypothesis-show-statistics`
(6 properties, 1000 each: 6,000 cases for a release).  Dockerfiles have their own properties in
tests/manifests/test_dockerfile_properties.py.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import create_engine

from bot.config import parse_repo_config
from bot.errors import BotError
from bot.manifests.lockfile import parse_package_lock
from bot.manifests.package_json import PackageJson
from bot.models import Project
from bot.planning.npm_family import FamilyPolicy, ProjectInput, plan_family
from bot.service.metrics import Metrics
from bot.service.webhook import DeliveryLog, WebhookApp
from bot.sources.npm.models import Packument
from bot.sources.npm.settings import sanitize_project_npmrc

EXAMPLES = int(os.environ.get("ROTATION_BOT_FUZZ_EXAMPLES", "150"))
SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
NAMES = ("@img/sharp-linux-x64", "@img/sharp-libvips-linux-x64")
KEYS = st.sampled_from(
    [
        "sharp",
        *NAMES,
        "dependencies",
        "devDependencies",
        "optionalDependencies",
        "overrides",
        "workspaces",
        "allowScripts",
        "version",
        "name",
        ".",
        "$sharp",
        "next",
        "packages",
        "lockfileVersion",
        "node_modules/sharp",
        f"node_modules/{NAMES[0]}",
        "integrity",
        "os",
        "cpu",
        "libc",
        "link",
        "resolved",
    ]
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.sampled_from(["0.33.4", "^0.33.4", "$sharp", "1.0.2", "latest", "*", "", "0.34.0-rc.1"]),
    st.text(max_size=12),
)
# JSON shaped like the documents the bot reads: the right keys in the wrong places and types
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(KEYS | st.text(max_size=8), inner, max_size=5)
    ),
    max_leaves=30,
)


def _packument() -> Packument:
    now = datetime(2026, 11, 22, tzinfo=UTC)
    versions = {
        version: {
            "name": "sharp",
            "version": version,
            "dist": {
                "tarball": f"https://r.test/sharp-{version}.tgz",
                "integrity": "sha512-" + "A" * 86 + "==",
            },
            "optionalDependencies": {NAMES[0]: version, NAMES[1]: "1.0.2"},
        }
        for version in ("0.33.4", "0.33.5", "0.34.0")
    }
    times = {version: (now - timedelta(days=30)).isoformat() for version in versions}
    return Packument("sharp", {"versions": versions, "time": times}, host="r.test")


PARENT = _packument()
POLICY = FamilyPolicy("sharp", "sharp", NAMES, timedelta(0), add_pins=True)


@SETTINGS
@given(manifest=JSON, lock=JSON)
def test_manifests_and_lockfiles_never_crash_parsing_or_planning(manifest: Any, lock: Any) -> None:
    text = json.dumps(manifest)
    lock_text = json.dumps(
        {"lockfileVersion": 3, "packages": lock} if isinstance(lock, dict) else lock
    )
    try:
        document = PackageJson.parse(text)
        tree = parse_package_lock(lock_text)
        item = ProjectInput(
            Project("", "npm", "package-lock.json"), {"package.json": document}, tree
        )
        plan_family(
            repo="r", base_commit="c", inputs=[item], parent=PARENT, policy=POLICY,
            now=datetime(2026, 11, 30, tzinfo=UTC),
        )  # fmt: skip
    except BotError:
        pass


@SETTINGS
@given(text=st.text(max_size=400) | JSON.map(json.dumps))
def test_raw_text_as_package_json_or_lockfile_is_a_one_line_error(text: str) -> None:
    for parse in (PackageJson.parse, parse_package_lock):
        try:
            parse(text)
        except BotError as error:
            assert "\n" not in error.message


YAML_PIECES = st.sampled_from(
    [
        "version: 1\n", "runbooks:\n", "  sharp:\n", "    platforms: [linux-x64]\n",
        "    major: latest\n", "    directories: [apps/*]\n", "    minimum-release-age: 3d\n",
        "pull-requests:\n", "  base: main@{yesterday}\n", "  labels: [a, b]\n", "verify:\n",
        "  signatures: maybe\n", "&a [*a]\n", "- - - -\n", "{{{{\n", ": :\n", "\t\n", "!!python/object:os.system\n",
        "x: !!binary AAAA\n", "dashboard: yes\n",
    ]
)  # fmt: skip


@SETTINGS
@given(pieces=st.lists(YAML_PIECES, max_size=12), noise=st.text(max_size=40))
def test_repository_configs_are_valid_or_one_config_error(pieces: list[str], noise: str) -> None:
    try:
        parse_repo_config("".join(pieces) + noise)
    except BotError as error:
        assert "\n" not in error.message


@SETTINGS
@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(
                ["registry", "@img:registry", "git", "proxy", "//h/:_authToken", "omit", "x"]
            )
            | st.text(max_size=10),
            st.text(max_size=30) | st.sampled_from(["${SECRET}", "http://h/", "https://h/${X}/"]),
        ),
        max_size=8,
    )
)
def test_repository_npmrc_never_crashes_and_never_leaks(lines: list[tuple[str, str]]) -> None:
    text = "".join(f"{key}={value}\n" for key, value in lines)
    try:
        config = sanitize_project_npmrc(text, {"SECRET": "leak-me-if-you-can"})
    except BotError:
        return
    assert "leak-me-if-you-can" not in config.text()
    assert not any(key in ("git", "proxy") for key, _ in config.values)


@SETTINGS
@given(versions=JSON, times=JSON, name=st.sampled_from(["sharp", "@img/sharp-linux-x64"]))
def test_registry_answers_are_validated_or_refused(versions: Any, times: Any, name: str) -> None:
    try:
        packument = Packument(name, {"versions": versions, "time": times}, host="r.test")
        for release in packument.releases():
            packument.manifest(release.version)
    except BotError:
        pass


EVENTS = st.sampled_from(
    ["issue_comment", "installation", "installation_repositories", "ping", "push"]
)


@pytest.fixture(scope="module")
def webhook() -> WebhookApp:
    engine = create_engine("sqlite://")
    return WebhookApp(
        secret="fuzz-secret",
        deliveries=DeliveryLog(engine),
        metrics=Metrics(),
        chat=None,
        serves=lambda repo: True,
    )


@SETTINGS
@given(payload=JSON, event=EVENTS, delivery=st.text(max_size=20))
def test_webhook_payloads_never_cause_a_server_error(
    webhook: WebhookApp, payload: Any, event: str, delivery: str
) -> None:
    body = json.dumps(payload).encode()
    signature = "sha256=" + hmac.new(b"fuzz-secret", body, hashlib.sha256).hexdigest()
    statuses: list[str] = []
    environ = {
        "REQUEST_METHOD": "POST",
        "PATH_INFO": "/webhook",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": io.BytesIO(body),
        "HTTP_X_HUB_SIGNATURE_256": signature,
        "HTTP_X_GITHUB_EVENT": event,
        "HTTP_X_GITHUB_DELIVERY": delivery,
    }
    b"".join(webhook(environ, lambda status, headers, *_: statuses.append(status)))  # type: ignore[arg-type]
    assert statuses and not statuses[0].startswith("5"), statuses
