"""The dashboard in a real headless Chromium, served by the real service (`start_service`, the
same WSGI app and port as `/webhook` and `/healthz`) from the audit trail of real rotations.

Page scripts are switched off in the browser (`Emulation.setScriptExecutionDisabled`) except
where a test must prove that hostile text cannot run a script even when scripts could run.
Screenshots of both pages are saved as test artifacts (see SCREENSHOTS; docs/screenshots/ holds
the committed ones linked from the README, refreshed with ROTATION_BOT_UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

from bot.audit import AuditStore
from bot.config import Settings
from bot.service.app import RunningService, start_service
from tests.conftest import pin_names
from tests.service.conftest import HOSTILE_DEPRECATION, HOSTILE_REPO, HOSTILE_SCRIPT, Fleet
from tests.support.browser import Browser, browser_fixture
from tests.support.service import RecordingPipeline, RecordingRunner

TOKEN = "dashboard-token-for-tests-0123456789"
ROOT = Path(__file__).resolve().parents[2]
# Test artifacts: written under the test's temporary root, or into the committed
# docs/screenshots/ (linked from the README) when ROTATION_BOT_UPDATE_SCREENSHOTS=1.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("ROTATION_BOT_UPDATE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "rotation-bot-screenshots"
)

browser = browser_fixture(javascript=False)  # the dashboard needs no script
scripting_browser = browser_fixture(javascript=True)  # to prove hostile text cannot run one


@pytest.fixture
def served(tmp_path: Path, fleet: Fleet) -> Iterator[RunningService]:
    settings = Settings(
        listen="127.0.0.1:0",
        state_dir=tmp_path / "state",
        database_url=fleet.database_url,
        dashboard_token=TOKEN,
    )
    pipeline = RecordingPipeline(RecordingRunner(), AuditStore(fleet.database_url))
    service = start_service(settings, pipeline, repositories=lambda: ())
    try:
        yield service
    finally:
        service.stop()


def sign_in(browser: Browser, url: str, path: str = "/dashboard") -> None:
    """Open `path`, get sent to the form, sign in with the token, land back on `path`."""
    browser.open(url + path)
    assert urlsplit(browser.driver.current_url).path == "/dashboard/login"
    browser.driver.find_element(By.ID, "token").send_keys(TOKEN)
    browser.driver.find_element(By.ID, "sign-in").click()
    # the click returns once the form is sent, not always once the next page has loaded
    WebDriverWait(browser.driver, 30).until(
        lambda driver: urlsplit(driver.current_url).path == path
    )


def rows(browser: Browser) -> dict[str, str]:
    """Fleet rows: repository → the row's text."""
    return {
        row.get_attribute("data-repo") or "": row.text
        for row in browser.driver.find_elements(By.CSS_SELECTOR, "tr.repository")
    }


def assert_stayed_local(browser: Browser, origin: str) -> None:
    requested = browser.requested_urls()
    assert requested, "the DevTools log saw no request at all"
    outside = [url for url in requested if not url.startswith(origin + "/")]
    assert not outside, f"requests left {origin}: {outside}"


def test_fleet_page_lists_every_repository_with_its_versions(
    served: RunningService, browser: Browser, fleet: Fleet
) -> None:
    sign_in(browser, served.url)

    found = rows(browser)
    assert set(found) == {fleet.web, fleet.api, HOSTILE_REPO}
    driver = browser.driver
    web = driver.find_element(By.CSS_SELECTOR, f'tr[data-repo="{fleet.web}"]')
    # web merged its patch: sharp 0.33.9 now, the 0.33.9 pins, the major and base-image PRs open
    assert web.find_element(By.CSS_SELECTOR, ".current-version").text == "0.33.9"
    pins = dict(pin.text.split() for pin in web.find_elements(By.CSS_SELECTOR, ".package li"))
    assert pins == {name: "1.0.4" if "libvips" in name else "0.33.9" for name in pin_names()}
    open_prs = [item.text for item in web.find_elements(By.CSS_SELECTOR, ".open-rotation")]
    assert len(open_prs) == 2
    assert any("major" in text and "0.34.1" in text for text in open_prs)
    assert not any("0.33.9" in text for text in open_prs), "the merged patch is not open"
    image = web.find_element(By.CSS_SELECTOR, ".image").text
    assert fleet.digests["old"][:19] in image and "built" in image
    api = driver.find_element(By.CSS_SELECTOR, f'tr[data-repo="{fleet.api}"]')
    assert api.get_attribute("data-state") == "incident"
    assert api.find_element(By.CSS_SELECTOR, ".current-version").text == "0.33.4"
    assert "pending sharp 0.33.9" in api.find_element(By.CSS_SELECTOR, ".pending").text
    assert "failed verify-tarballs" in api.find_element(By.CSS_SELECTOR, ".incident").text
    assert driver.find_element(By.ID, "count-repositories").text == "3"
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-lead-time rect.review"), "merge seen"
    assert driver.find_elements(By.CSS_SELECTOR, "#chart-outcomes rect.failed")
    assert_stayed_local(browser, served.url)
    browser.screenshot(SCREENSHOTS / "fleet.png")


def test_fleet_filters_and_sorts_without_javascript(
    served: RunningService, browser: Browser, fleet: Fleet
) -> None:
    sign_in(browser, served.url)
    driver = browser.driver

    driver.find_element(By.ID, "filter-q").send_keys("api")
    driver.find_element(By.ID, "filter-apply").click()
    assert "q=api" in driver.current_url
    assert list(rows(browser)) == [fleet.api]

    browser.open(served.url + "/dashboard?state=failed")
    assert list(rows(browser)) == [HOSTILE_REPO]

    browser.open(served.url + "/dashboard?sort=incidents&order=desc")
    assert next(iter(rows(browser))) == fleet.api
    driver.find_element(By.LINK_TEXT, "Repository").click()  # a header link re-sorts
    assert list(rows(browser)) == sorted([fleet.web, fleet.api, HOSTILE_REPO], key=str.lower)


def test_run_page_shows_each_step_and_the_failing_verification(
    served: RunningService, browser: Browser, fleet: Fleet
) -> None:
    run_id = fleet.runs["api:sharp:0.33.9:failed"]
    recorded = [record["kind"] for record in fleet.store().run_steps(run_id)]
    sign_in(browser, served.url, f"/dashboard/runs/{run_id}")
    driver = browser.driver

    steps = driver.find_elements(By.CSS_SELECTOR, "li.step")
    assert [step.get_attribute("data-kind") for step in steps] == recorded
    failed = driver.find_element(By.CSS_SELECTOR, 'li.step[data-status="failed"]')
    assert failed.get_attribute("data-kind") == "verify-tarballs"
    reason = driver.find_element(By.ID, "failure").text
    assert "@img/sharp-linuxmusl-x64@0.33.9" in reason and "hashes to" in reason
    problems = failed.find_element(By.CSS_SELECTOR, "ul.problems").text
    assert "@img/sharp-linuxmusl-x64@0.33.9" in problems
    tarballs = failed.find_element(By.CSS_SELECTOR, "table.evidence").text
    assert "matches registry" in tarballs and "no" in tarballs.split()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#timeline rect")) == len(recorded)
    assert driver.find_element(By.ID, "chain-status").text.startswith("verify: ok")
    assert "proposed nothing" in driver.find_element(By.ID, "proposal").text
    assert_stayed_local(browser, served.url)
    browser.screenshot(SCREENSHOTS / "run-failed.png")


def test_run_page_of_a_proposal_renders_its_evidence(
    served: RunningService, browser: Browser, fleet: Fleet
) -> None:
    run_id = fleet.runs["web:sharp:0.33.9:proposed"]
    sign_in(browser, served.url, f"/dashboard/runs/{run_id[:8]}")
    page = browser.driver.find_element(By.TAG_NAME, "main").text

    assert "Lockfile entries: versions and integrity" in page
    assert "Registry signatures" in page and "Risk signals" in page
    assert "install-script-added" in page and HOSTILE_SCRIPT in page
    assert "Rotate sharp 0.33.4 → 0.33.9" in browser.driver.find_element(By.ID, "proposal").text
    assert browser.driver.find_element(By.ID, "chain-status").text.startswith("verify: ok")
    browser.screenshot(SCREENSHOTS / "run.png")


def test_hostile_registry_text_renders_inert(
    served: RunningService, scripting_browser: Browser, fleet: Fleet
) -> None:
    browser = scripting_browser
    sign_in(browser, served.url)
    for path in ("/dashboard", f"/dashboard/runs/{fleet.runs['hostile']}"):
        browser.open(served.url + path)
        driver = browser.driver
        text = driver.find_element(By.TAG_NAME, "body").text
        assert "<script>alert('deprecated')</script>" in text, "shown as text"
        assert "[the fix](javascript:alert(1))" in text
        assert driver.find_elements(By.TAG_NAME, "script") == []
        assert driver.find_elements(By.TAG_NAME, "img") == []
        assert driver.find_elements(By.TAG_NAME, "iframe") == []
        hrefs = [a.get_attribute("href") or "" for a in driver.find_elements(By.TAG_NAME, "a")]
        assert not [href for href in hrefs if not href.startswith(served.url)], hrefs
        assert browser.dialogs() == []
        assert_stayed_local(browser, served.url)
    page = browser.driver.find_element(By.TAG_NAME, "body").text
    assert HOSTILE_REPO in page and "javascript:alert(6)" in page  # the URL shown, not linked
    assert (
        "[click](javascript:alert(11))" in browser.driver.find_element(By.ID, "proposal-body").text
    )
    assert HOSTILE_DEPRECATION.split(" moved")[0] in page


def test_unauthenticated_requests_get_no_data(
    served: RunningService, browser: Browser, fleet: Fleet
) -> None:
    run_id = fleet.runs["api:sharp:0.33.9:failed"]
    browser.open(f"{served.url}/dashboard/runs/{run_id}")
    assert urlsplit(browser.driver.current_url).path == "/dashboard/login"
    source = browser.driver.page_source
    assert fleet.api not in source and "verify-tarballs" not in source and "0.33.9" not in source
    assert browser.driver.find_element(By.NAME, "next").get_attribute("value") == (
        f"/dashboard/runs/{run_id}"
    ), "after signing in, the browser goes where it was refused"

    with httpx.Client(base_url=served.url, timeout=10) as client:
        anonymous = client.get("/dashboard")
        assert anonymous.status_code == 303 and anonymous.content == b""
        assert anonymous.headers["location"] == "/dashboard/login?next=%2Fdashboard"
        wrong = client.get(f"/dashboard/runs/{run_id}", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and b"verify-tarballs" not in wrong.content
        assert wrong.headers["www-authenticate"].startswith("Bearer")
        refused = client.post("/dashboard/login", data={"token": "not-the-token", "next": "/x"})
        assert refused.status_code == 401 and "set-cookie" not in refused.headers
        right = client.get("/dashboard", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status_code == 200 and fleet.api in right.text
        for response in (anonymous, wrong, refused, right):
            policy = response.headers["content-security-policy"]
            assert "default-src 'self'" in policy and "script-src 'none'" in policy
            assert "frame-ancestors 'none'" in policy
            assert response.headers["x-content-type-options"] == "nosniff"
            assert response.headers["referrer-policy"] == "no-referrer"
        assert client.get("/healthz").status_code == 200, "the same port serves the service"


def test_audit_export_writes_one_self_contained_page(
    tmp_path: Path, browser: Browser, fleet: Fleet
) -> None:
    run_id = fleet.runs["api:sharp:0.33.9:failed"]
    target = tmp_path / "run.html"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bot",
            "--database-url",
            fleet.database_url,
            "audit",
            "export",
            "--format",
            "html",
            run_id[:8],
            "--output",
            str(target),
        ],
        capture_output=True,
        text=True,
        check=False,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert completed.returncode == 0, completed.stderr
    html = target.read_text()
    assert not re.search(r'(?:href|src)="(?!#)', html), "nothing to fetch"

    browser.open(target.as_uri())
    assert browser.requested_urls() == [target.as_uri()]
    driver = browser.driver
    assert driver.find_element(By.CSS_SELECTOR, 'li.step[data-status="failed"]')
    assert "@img/sharp-linuxmusl-x64@0.33.9" in driver.find_element(By.ID, "failure").text
    header = driver.find_element(By.CSS_SELECTOR, "header.top")
    assert header.value_of_css_property("background-color") == "rgba(20, 32, 46, 1)", (
        "the inlined stylesheet applies under the page's own CSP"
    )
