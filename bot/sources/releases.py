"""Release notes from GitHub releases (`github:owner/name` in a runbook's watch section).

Release notes are evidence, not a gate: when they cannot be read the step is skipped with the
reason, and the proposal links the release page instead.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bot.errors import BotError
from bot.models import Skipped
from bot.sources.http import HttpSource

NOTES_LIMIT = 512 * 1024
TRIMMED_LENGTH = 4000
_BREAKING = re.compile(
    r"breaking|\bremoved?\b|\bdrop(?:s|ped)?\b.*support|no longer|deprecat|"
    r"requires? (?:node|libvips)|minimum (?:supported )?(?:node|version)",
    re.IGNORECASE,
)
_REPOSITORY = re.compile(r"^github:([A-Za-z0-9-]+/[A-Za-z0-9._-]+)$")


@dataclass(frozen=True)
class ReleaseNote:
    """One release's notes, trimmed, with the lines that look like breaking changes."""

    repository: str
    tag: str
    url: str
    body: str
    breaking_lines: tuple[str, ...]


def release_page(spec: str, version: str) -> str | None:
    """The human release page for `spec` (`github:owner/name`) at `version`."""
    match = _REPOSITORY.match(spec)
    return f"https://github.com/{match.group(1)}/releases/tag/v{version}" if match else None


def breaking_lines(text: str) -> tuple[str, ...]:
    """Lines of release notes that look like breaking changes."""
    return tuple(
        line.strip(" -*\t") for line in text.splitlines() if line.strip() and _BREAKING.search(line)
    )


class ReleaseNotes:
    """Reads GitHub releases through the REST API (github.com or a configured base URL)."""

    def __init__(self, http: HttpSource, api_url: str, token: str | None = None) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.token = token

    def find(self, spec: str, version: str) -> ReleaseNote | Skipped:
        """The release `v<version>` of the repository named by `spec`, or why not."""
        match = _REPOSITORY.match(spec)
        if not match:
            return Skipped(spec, "release-notes must look like github:owner/name")
        repository = match.group(1)
        url = f"{self.api_url}/repos/{repository}/releases/tags/v{version}"
        headers = {"Accept": "application/vnd.github+json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            body = self.http.fetch("GET", url, headers=headers, limit=NOTES_LIMIT, attempts=1)
            if body.status_code == 404:
                return Skipped(f"{repository} v{version}", "no GitHub release for this tag")
            if body.status_code != 200:
                return Skipped(f"{repository} v{version}", f"HTTP {body.status_code}")
            data = body.json()
        except BotError as error:
            return Skipped(f"{repository} v{version}", f"release notes unavailable: {error}")
        text = str(data.get("body") or "") if isinstance(data, dict) else ""
        page = data.get("html_url") if isinstance(data, dict) else None
        return ReleaseNote(
            repository=repository,
            tag=f"v{version}",
            url=page if isinstance(page, str) else str(release_page(spec, version)),
            body=text[:TRIMMED_LENGTH] + ("\n…" if len(text) > TRIMMED_LENGTH else ""),
            breaking_lines=breaking_lines(text),
        )
