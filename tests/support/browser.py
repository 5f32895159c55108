"""A real headless Chromium for the tests: Debian's `chromium` and `chromium-driver`, driven
through Selenium with the DevTools performance log on.

`deploy/bootstrap.sh --test` installs both packages with apt.  The browser runs as root, so it
needs `--no-sandbox`; every background service that would phone home is off, and each browser
gets a fresh profile directory.  What the page did is read from the DevTools log, not from page
JavaScript (the pages have none, and tests may switch script execution off entirely):

    browser = start_browser(tmp_path / "profile", javascript=False)   # or, in a test module:
    browser = browser_fixture(javascript=False)                          # a pytest fixture
    try:
        browser.open(url)                      # drains the log first
        browser.requested_urls()               # every request the page made since `open`
        browser.dialogs()                      # alert/confirm/prompt dialogs that opened
        browser.screenshot(path)               # the full page as PNG
    finally:
        browser.stop()
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.chrome.webdriver import WebDriver

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-default-apps",
    "--disable-extensions",
    "--window-size=1440,1000",
)


@dataclass
class Browser:
    """A running Chromium session and the DevTools events seen since the last `open`."""

    driver: WebDriver
    events: list[dict[str, Any]] = field(default_factory=list)

    def _drain(self) -> list[dict[str, Any]]:
        return [
            json.loads(entry["message"])["message"] for entry in self.driver.get_log("performance")
        ]

    def open(self, url: str) -> None:
        """Navigate to `url` (forgetting earlier events) and wait for the load."""
        self._drain()
        self.events = []
        self.driver.get(url)

    def _collect(self) -> list[dict[str, Any]]:
        self.events.extend(self._drain())
        return self.events

    def requested_urls(self) -> list[str]:
        """Every URL the page requested since `open` (DevTools `Network.requestWillBeSent`)."""
        return [
            event["params"]["request"]["url"]
            for event in self._collect()
            if event["method"] == "Network.requestWillBeSent"
        ]

    def dialogs(self) -> list[dict[str, Any]]:
        """JavaScript dialogs (alert, confirm, prompt) that opened since `open`."""
        return [
            event["params"]
            for event in self._collect()
            if event["method"] == "Page.javascriptDialogOpening"
        ]

    def console_errors(self) -> list[str]:
        """Console messages of level SEVERE (CSP violations land here)."""
        return [
            str(entry["message"])
            for entry in self.driver.get_log("browser")
            if entry.get("level") == "SEVERE"
        ]

    def screenshot(self, path: Path) -> None:
        """Save the whole page (not just the window) as PNG."""
        metrics = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})
        size = metrics["cssContentSize"]
        shot = self.driver.execute_cdp_cmd(
            "Page.captureScreenshot",
            {
                "format": "png",
                "captureBeyondViewport": True,
                "clip": {
                    "x": 0,
                    "y": 0,
                    "width": size["width"],
                    "height": size["height"],
                    "scale": 1,
                },
            },
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(base64.b64decode(shot["data"]))

    def stop(self) -> None:
        """Quit the browser and its driver."""
        self.driver.quit()


def start_browser(profile: Path, *, javascript: bool = True) -> Browser:
    """Start headless Chromium with a fresh profile in `profile` (scripts off if not `javascript`)."""
    if not (CHROMIUM.exists() and CHROMEDRIVER.exists()):
        pytest.fail("chromium and chromium-driver are missing: run bash deploy/bootstrap.sh --test")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    if not javascript:
        driver.execute_cdp_cmd("Emulation.setScriptExecutionDisabled", {"value": True})
    return Browser(driver)


def browser_fixture(*, javascript: bool) -> Any:
    """A pytest fixture giving each test a fresh headless Chromium (page scripts on or off)."""

    @pytest.fixture
    def fixture(tmp_path: Path) -> Iterator[Browser]:
        running = start_browser(tmp_path / "chromium-profile", javascript=javascript)
        try:
            yield running
        finally:
            running.stop()

    return fixture
