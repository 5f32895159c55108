"""The dashboard without a browser: what it derives from the audit trail, who may see it, the
HTTP answers of its WSGI app, and the markdown of the dashboard issue."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from datetime import UTC, datetime
from fnmatch import fnmatch
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from bot.audit import AuditStore
from bot.cli import main
from bot.config import load_settings, secret_variables
from bot.errors import ConfigError, redact
from bot.models import utc_now
from bot.service.dashboard.auth import COOKIE, DashboardAuth
from bot.service.dashboard.data import FleetQuery, load_fleet, parse_time, repository_status
from bot.service.dashboard.render import render_issue, web_url
from bot.service.dashboard.web import ChainCheck, DashboardApp
from tests.service.conftest import HOSTILE_REPO, OLD_DATE, Fleet

TOKEN = "dashboard-token-for-tests-0123456789"


# --- what the fleet page derives -----------------------------------------------------------


def test_fleet_state_is_derived_from_real_rotations(fleet: Fleet) -> None:
    statuses = {s.repo: s for s in load_fleet(fleet.store(), now=utc_now()).repositories}
    web, api = statuses[fleet.web], statuses[fleet.api]

    assert [(line.runbook, line.current_version) for line in web.packages] == [("sharp", "0.33.9")]
    assert {(pr.kind, pr.version) for pr in web.open_rotations} == {
        ("major", "0.34.1"),
        ("digest", next(pr.version for pr in web.open_rotations if pr.kind == "digest")),
    }
    (image,) = web.images
    assert image.digest == fleet.digests["old"] and image.created == parse_time(OLD_DATE)
    assert web.state == "ok" and not web.pending and not web.incidents

    (pending,) = api.pending
    assert (pending.version, pending.outcome) == ("0.33.9", "failed")
    assert pending.run_id == fleet.runs["api:sharp:0.33.9:failed"]
    (incident,) = api.incidents
    assert "verify-tarballs" in incident.title and api.state == "incident"
    held = {item.subject: item.reason for item in api.held}
    assert held["sharp@0.33.8"].startswith("deprecated: <script>")
    assert statuses[HOSTILE_REPO].state == "failed"


def test_lead_time_runs_from_release_to_pull_request_to_merge_seen(fleet: Fleet) -> None:
    leads = {
        (lead.runbook, lead.version): lead
        for lead in load_fleet(fleet.store(), now=utc_now()).lead_times
    }

    patch = leads[("sharp", "0.33.9")]
    assert patch.published_at is not None and patch.published_at <= patch.opened_at
    assert patch.merged_seen_at is not None and patch.merged_seen_at > patch.opened_at
    assert leads[("sharp", "0.34.1")].merged_seen_at is None, "the major is still open"


def _proposal_run(store: AuditStore, version: str, superseded: list[str]) -> str:
    run_id = store.start_run(repo="octo/app", runbook="sharp", trigger="cli", actor="t")
    branch = f"rotation-bot/sharp-{version}"
    store.append(
        run_id,
        "plan",
        "passed",
        {
            "current_version": "0.33.4",
            "current_pins": [],
            "skipped": [],
            "rotations": [{"kind": "patch", "new_version": version, "branch": branch}],
        },
        started_at=None,
    )
    store.append(
        run_id,
        "propose",
        "passed",
        {
            "branch": branch,
            "url": f"https://github.com/octo/app/pull/{version[-1]}",
            "created": True,
            "superseded": superseded,
        },
        started_at=None,
    )
    store.finish_run(run_id, outcome="proposed", message="proposed")
    return run_id


def test_a_superseded_proposal_is_no_longer_open(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    _proposal_run(store, "0.33.5", [])
    newest = _proposal_run(store, "0.33.6", ["rotation-bot/sharp-0.33.5"])

    status = repository_status(store, "octo/app", now=utc_now())

    assert status is not None
    assert [(pr.version, pr.run_id) for pr in status.open_rotations] == [("0.33.6", newest)]
    assert repository_status(store, "octo/other", now=utc_now()) is None


def test_query_parameters_filter_and_sort_and_ignore_nonsense(fleet: Fleet) -> None:
    statuses = load_fleet(fleet.store(), now=utc_now()).repositories

    bad = FleetQuery.parse({"sort": "'; drop", "state": "<b>", "order": "sideways"})
    assert (bad.sort, bad.state, bad.descending) == ("repo", "", False)
    assert [s.repo for s in FleetQuery.parse({"q": "API"}).apply(statuses)] == [fleet.api]
    attention = FleetQuery.parse({"state": "incident"}).apply(statuses)
    assert [s.repo for s in attention] == [fleet.api]
    by_open = FleetQuery.parse({"sort": "open", "order": "desc"}).apply(statuses)
    assert by_open[0].repo == fleet.web
    assert FleetQuery.parse({"sort": "open"}).sort_link("open").endswith("order=desc")


# --- who may look ----------------------------------------------------------------------------


def test_settings_read_the_dashboard_variables_and_treat_the_token_as_secret(
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    environ = {
        "ROTATION_BOT_DASHBOARD_TOKEN_FILE": str(token_file),
        "ROTATION_BOT_DASHBOARD_AUTH_HEADER": "X-Forwarded-User",
        "ROTATION_BOT_DASHBOARD_TRUSTED_PROXIES": "10.0.0.0/8, 192.168.1.7",
    }
    settings = load_settings(environ)

    assert settings.dashboard_token == TOKEN
    assert settings.dashboard_trusted_proxies == ("10.0.0.0/8", "192.168.1.7")
    assert redact(f"token={TOKEN}") == "token=***"
    assert secret_variables({"ROTATION_BOT_DASHBOARD_TOKEN": TOKEN}) == [
        "ROTATION_BOT_DASHBOARD_TOKEN"
    ], "removed from the environment before any child process starts"
    assert DashboardAuth.from_settings(settings).enabled


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"token": "short"}, "ROTATION_BOT_DASHBOARD_TOKEN"),
        ({"token": None, "proxy_header": "X Forwarded"}, "ROTATION_BOT_DASHBOARD_AUTH_HEADER"),
        ({"token": TOKEN, "trusted_proxies": ("proxy.local",)}, "TRUSTED_PROXIES"),
    ],
)
def test_bad_dashboard_settings_are_one_line_errors(
    arguments: dict[str, object], named: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        DashboardAuth(**arguments)  # type: ignore[arg-type]
    assert named in raised.value.message and "\n" not in raised.value.message


def test_a_proxy_header_counts_only_from_a_trusted_proxy() -> None:
    auth = DashboardAuth(
        token=None, proxy_header="X-Forwarded-User", trusted_proxies=("10.0.0.0/8",)
    )
    header = {"HTTP_X_FORWARDED_USER": "alice"}

    assert auth.viewer({**header, "REMOTE_ADDR": "10.1.2.3"}).name == "alice"  # type: ignore[union-attr]
    assert auth.viewer({**header, "REMOTE_ADDR": "127.0.0.1"}) is None
    assert auth.viewer({"HTTP_X_FORWARDED_USER": "a\x1bb", "REMOTE_ADDR": "10.1.2.3"}) is None
    assert not auth.accepts_token and auth.enabled


def _cookie_value(set_cookie: str) -> str:
    return set_cookie.split(";", 1)[0].split("=", 1)[1]


def test_sessions_expire_and_end_when_the_token_changes() -> None:
    moment = [1_000_000.0]
    clock: Callable[[], float] = lambda: moment[0]  # noqa: E731
    auth = DashboardAuth(token=TOKEN, clock=clock)
    value = _cookie_value(auth.session_cookie(secure=False))
    environ = {"HTTP_COOKIE": f"{COOKIE}={value}"}

    assert auth.viewer(environ) is not None
    expires, _, mac = value.partition(".")
    forged = f"{int(expires) + 3600}.{mac}"
    assert auth.viewer({"HTTP_COOKIE": f"{COOKIE}={forged}"}) is None, "expiry is signed"
    assert DashboardAuth(token=TOKEN + "-rotated", clock=clock).viewer(environ) is None
    moment[0] += 12 * 3600 + 1
    assert auth.viewer(environ) is None


# --- the WSGI app over HTTP ---------------------------------------------------------------------


def _client(app: DashboardApp, base: str = "http://dashboard.test") -> httpx.Client:
    return httpx.Client(transport=httpx.WSGITransport(app=app), base_url=base)


def test_without_configuration_nobody_gets_in(fleet: Fleet) -> None:
    app = DashboardApp(audit=fleet.store(), auth=DashboardAuth(token=None))
    with _client(app) as client:
        page = client.get("/dashboard")
        assert page.status_code == 404 and "ROTATION_BOT_DASHBOARD_TOKEN" in page.text
        assert fleet.api not in page.text
        assert client.get("/dashboard/login").status_code == 404
        css = client.get("/dashboard/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert css.headers["x-content-type-options"] == "nosniff"
        assert client.get("/dashboard/static/../../audit.py").status_code != 200


def test_signing_in_sets_a_strict_cookie_and_never_redirects_off_site(fleet: Fleet) -> None:
    app = DashboardApp(audit=fleet.store(), auth=DashboardAuth(token=TOKEN))
    with _client(app) as client:
        signed = client.post("/dashboard/login", data={"token": TOKEN, "next": "/dashboard?q=api"})
        assert signed.status_code == 303 and signed.headers["location"] == "/dashboard?q=api"
        cookie = signed.headers["set-cookie"]
        for attribute in ("HttpOnly", "SameSite=Strict", "Path=/dashboard", "Max-Age=43200"):
            assert attribute in cookie
        assert "Secure" not in cookie and TOKEN not in cookie
        assert client.get("/dashboard").status_code == 200, "the cookie signs the browser in"
        assert client.post("/dashboard").status_code == 405, "read-only"
        assert client.get("/dashboard/runs/ffffffff").status_code == 404
        out = client.post("/dashboard/logout")
        assert out.status_code == 303 and "Max-Age=0" in out.headers["set-cookie"]
        for target in ("https://evil.example/", "//evil.example", "/dashboard\r\nX: y", "/other"):
            answer = client.post("/dashboard/login", data={"token": TOKEN, "next": target})
            assert answer.headers["location"] == "/dashboard"
    with _client(app, "https://dashboard.test") as client:
        cookie = client.post("/dashboard/login", data={"token": TOKEN}).headers["set-cookie"]
        assert "; Secure" in cookie


def test_every_answer_carries_the_security_headers(fleet: Fleet) -> None:
    app = DashboardApp(audit=fleet.store(), auth=DashboardAuth(token=TOKEN))
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    with _client(app) as client:
        answers = [
            client.get("/dashboard", headers=bearer),
            client.get(f"/dashboard/runs/{fleet.runs['hostile']}", headers=bearer),
            client.get("/dashboard/runs/0000", headers=bearer),
            client.get("/dashboard/login"),
            client.get("/dashboard"),
            client.get("/dashboard/static/favicon.svg"),
        ]
    for answer in answers:
        policy = answer.headers["content-security-policy"]
        assert re.search(r"(^|; )default-src 'self'(;|$)", policy)
        assert "script-src 'none'" in policy and "frame-ancestors 'none'" in policy
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
    assert answers[0].headers["cache-control"] == "no-store"
    assert (
        "<script" not in answers[1].text
        and "&lt;script&gt;alert(5)&lt;/script&gt;" in answers[1].text
    )
    assert 'href="javascript:' not in answers[1].text


# --- the dashboard issue's markdown -----------------------------------------------------------


def test_the_issue_body_lists_what_to_act_on_with_commands(fleet: Fleet) -> None:
    api = repository_status(fleet.store(), fleet.api, now=utc_now())
    assert api is not None

    body = render_issue(api, ["base-image", "sharp"])

    pending = next(line for line in body.splitlines() if "retry" in line)
    assert "`0.33.9`" in pending and "`/rotate sharp 0.33.9`" in pending
    assert f"`rotation-bot audit show {fleet.runs['api:sharp:0.33.9:failed'][:8]}`" in pending
    assert "failed verify-tarballs" in body.split("### Last incidents")[1]
    assert body == render_issue(api, ["base-image", "sharp"]), "deterministic: no write if same"


def test_the_issue_body_keeps_registry_text_inert(fleet: Fleet) -> None:
    status = repository_status(fleet.store(), HOSTILE_REPO, now=utc_now())
    assert status is not None
    body = render_issue(status, ["sharp"])

    held = next(line for line in body.splitlines() if "sharp@9.9.9" in line)
    assert "&lt;script&gt;" in held and "<script>" not in held
    assert "\\[the fix\\](javascript:alert(1))" in held, "no link can form"
    assert "@octocat" not in held and "@\u200boctocat" in held, "nobody is mentioned"
    assert (
        web_url("javascript:alert(1)") is None and web_url("https://x.test/a") == "https://x.test/a"
    )


def test_parse_time_reads_the_audit_stamps() -> None:
    assert parse_time("2024-01-01T00:00:00Z") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_time("2024-01-01T00:00:00") == datetime(2024, 1, 1, tzinfo=UTC)
    assert parse_time("not a time") is None and parse_time(None) is None
    assert parse_time("2024-01-01T00:00:00+02:00") == datetime(2023, 12, 31, 22, tzinfo=UTC)


def test_the_wheel_carries_every_template_and_static_file() -> None:
    root = Path(__file__).resolve().parents[2]
    globs = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"
    ]["bot"]
    package = root / "bot" / "service" / "dashboard"
    shipped = [
        path.relative_to(root / "bot").as_posix()
        for folder in ("templates", "static")
        for path in (package / folder).iterdir()
    ]
    assert len(shipped) >= 10
    missing = [name for name in shipped if not any(fnmatch(name, glob) for glob in globs)]
    assert not missing, f"add to [tool.setuptools.package-data]: {missing}"


def test_audit_export_html_needs_one_run_and_says_so(fleet: Fleet, tmp_path: Path) -> None:
    def export(*args: str) -> Result:
        return CliRunner().invoke(
            main,
            ["--database-url", fleet.database_url, "audit", "export", *args],
            env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
        )

    for args, expected in (
        (["--format", "html"], "needs the RUN"),
        (["--format", "html", "ffffffff"], "no single run matches 'ffffffff'"),
        ([fleet.runs["hostile"]], "RUN selects the run of --format html"),
    ):
        result = export(*args)
        assert result.exit_code == 2, result.output
        # one line, beside any cleanup warning (a killed test's temporary directory removed)
        said = [line for line in result.stderr.splitlines() if not line.startswith("WARNING ")]
        assert expected in result.stderr and len(said) == 1, result.stderr
    page = export("--format", "html", fleet.runs["hostile"][:8], "-o", "-")
    assert page.exit_code == 0 and page.stdout.startswith("<!doctype html>")
    assert "&lt;script&gt;alert(5)&lt;/script&gt;" in page.stdout and "<script>" not in page.stdout


def _tamper(store: AuditStore, run_id: str) -> None:
    with store.engine.begin() as connection:
        connection.exec_driver_sql(
            "UPDATE steps SET evidence = ? WHERE run_id = ? AND kind = 'propose'",
            ('{"branch":"rotation-bot/sharp-9.9.9"}', run_id),
        )


def test_run_page_shows_a_broken_chain_and_the_record_that_was_edited(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    run_id = _proposal_run(store, "0.33.5", [])
    _tamper(store, run_id)
    app = DashboardApp(audit=store, auth=DashboardAuth(token=TOKEN))

    with _client(app) as client:
        page = client.get(f"/dashboard/runs/{run_id}", headers={"Authorization": f"Bearer {TOKEN}"})

    status = re.search(r'<p id="chain-status">(.*?)</p>', page.text, re.DOTALL)
    assert status is not None and "verify: broken" in status.group(1)
    assert "contents were edited" in status.group(1) and "propose" in status.group(1)
    recomputes = re.findall(r'<span class="badge (yes|no)">(?:yes|no)</span></td></tr>', page.text)
    assert recomputes == ["yes", "yes", "no", "yes"], "the edited record is the one marked"


def test_the_chain_check_is_reused_only_while_nothing_changed(tmp_path: Path) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}")
    run_id = _proposal_run(store, "0.33.5", [])
    moment = [0.0]
    check = ChainCheck(store, max_age=60, clock=lambda: moment[0])
    assert check().records == 4

    _proposal_run(store, "0.33.6", [])
    assert check().records == 8, "the chain grew: recomputed at once"
    _tamper(store, run_id)
    assert check().ok, "same head, within max_age: the last verdict"
    moment[0] = 61.0
    assert not check().ok, "recomputed after max_age"
