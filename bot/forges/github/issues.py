"""Issues on GitHub: notices (verification incidents, majors awaiting approval) and the
dependency dashboard issue.

Each notice is one issue per kind, runbook and target, found again by a hidden marker at the end
of its body (`<!-- rotation-bot-incident sharp@0.33.5 -->`) among the issues with its label, and
updated in place when its text changed; the dashboard issue is found the same way and reopened
if someone closed it.  Lists are asked conditionally, so a quiet cycle costs a free request.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from github import Github
from github.Issue import Issue

from bot.errors import ServiceUnavailable, redact
from bot.forges.base import DASHBOARD_TITLE, Notice
from bot.forges.github.client import GitHubClient, Uncertain, split_name, string_field

log = logging.getLogger(__name__)

INCIDENT_LABEL = "rotation-bot-incident"
APPROVAL_LABEL = "rotation-bot-approval"
DASHBOARD_LABEL = "rotation-bot-dashboard"
DASHBOARD_MARKER = "<!-- rotation-bot-dashboard -->"
LABELS = {"incident": INCIDENT_LABEL, "approval": APPROVAL_LABEL}


def notice_marker(notice: Notice) -> str:
    """The hidden line that identifies a notice's issue."""
    return f"<!-- rotation-bot-{notice.kind} {notice.runbook}@{notice.target} -->"


class Issues:
    """Notices and the dashboard issue in the repositories one `GitHubClient` reaches."""

    def __init__(self, client: GitHubClient) -> None:
        self.client = client
        self.host = client.host
        self.options = client.options

    def ensure_notice(self, repo: str, notice: Notice) -> str | None:
        """Open, or update, the one open issue of this notice's kind, runbook and target."""
        client = self.client.client_for(repo)
        label = LABELS[notice.kind]
        marker = notice_marker(notice)
        body = f"{redact(notice.body).rstrip()}\n\n{marker}\n"
        title = redact(notice.title)
        found = self._find_issue(client, repo, label, marker)
        if found is None:
            url = self._create_issue(client, repo, title, body, label, marker)
            log.warning("notice opened", extra={"kind": notice.kind, "repo": repo, "url": url})
            return url
        url = string_field(found.get("html_url"), source=self.host, what="html_url")
        if found.get("title") != title or found.get("body") != body:
            issue = client.create_from_raw_data(Issue, dict(found))
            self.client.call(
                f"updating {url}",
                lambda: issue.edit(title=title, body=body),
                idempotent=True,
            )
            log.info("notice updated", extra={"kind": notice.kind, "repo": repo, "url": url})
        return url

    def close_notice(self, repo: str, notice: Notice, comment: str) -> None:
        """Comment on and close the open issue of this notice (nothing when there is none)."""
        client = self.client.client_for(repo)
        found = self._find_issue(client, repo, LABELS[notice.kind], notice_marker(notice))
        if found is None:
            return
        issue = client.create_from_raw_data(Issue, dict(found))
        url = string_field(found.get("html_url"), source=self.host, what="html_url")
        self.client.call(
            f"commenting on {url}",
            lambda: issue.create_comment(redact(comment)),
            idempotent=False,
            uncertain_is_error=True,
        )
        self.client.call(f"closing {url}", lambda: issue.edit(state="closed"), idempotent=True)
        log.info("notice closed", extra={"kind": notice.kind, "repo": repo, "url": url})

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Open, or update in place, the one dashboard issue (label `rotation-bot-dashboard`,
        found by the hidden marker at the end of its body; a closed one is reopened).  The list
        is asked conditionally and an unchanged issue is not written: a quiet cycle costs one
        free request."""
        client = self.client.client_for(repo)
        text = f"{redact(body).rstrip()}\n\n{DASHBOARD_MARKER}\n"
        found = self._find_issue(client, repo, DASHBOARD_LABEL, DASHBOARD_MARKER, state="all")
        if found is None:
            url = self._create_issue(
                client, repo, DASHBOARD_TITLE, text, DASHBOARD_LABEL, DASHBOARD_MARKER
            )
            log.info("dashboard issue opened", extra={"repo": repo, "url": url})
            return url
        url = string_field(found.get("html_url"), source=self.host, what="html_url")
        if (found.get("title"), found.get("body"), found.get("state")) != (
            DASHBOARD_TITLE,
            text,
            "open",
        ):
            issue = client.create_from_raw_data(Issue, dict(found))
            self.client.call(
                f"updating the dashboard issue {url}",
                lambda: issue.edit(title=DASHBOARD_TITLE, body=text, state="open"),
                idempotent=True,
            )
            log.info("dashboard issue updated", extra={"repo": repo, "url": url})
        return url

    # --- pull requests -------------------------------------------------------------------

    def _find_issue(
        self, client: Github, repo: str, label: str, marker: str, *, state: str = "open"
    ) -> Mapping[str, Any] | None:
        """The issue (not pull request) labelled `label` whose body carries `marker` (open
        ones first when `state` is `all`)."""
        owner, name = split_name(repo)
        items = self.client.list_all(
            client,
            f"/repos/{quote(owner)}/{quote(name)}/issues",
            {"state": state, "labels": label},
        )
        found = [
            item
            for item in items
            if "pull_request" not in item
            and isinstance(item.get("body"), str)
            and marker in item["body"]
        ]
        found.sort(key=lambda item: item.get("state") != "open")
        return found[0] if found else None

    def _create_issue(
        self, client: Github, repo: str, title: str, body: str, label: str, marker: str
    ) -> str:
        """Open a labelled issue; after an uncertain failure, look for it before retrying."""
        repository = client.get_repo(repo)
        for attempt in range(1, self.options.attempts + 1):
            try:
                issue = self.client.call(
                    f"opening a {label} issue in {repo}",
                    lambda: repository.create_issue(title=title, body=body, labels=[label]),
                    idempotent=False,
                )
                return string_field(
                    issue.raw_data.get("html_url"), source=self.host, what="html_url"
                )
            except Uncertain:
                found = self._find_issue(client, repo, label, marker)
                if found is not None:
                    return string_field(found.get("html_url"), source=self.host, what="html_url")
                self.options.sleep(self.options.backoff * attempt)
        raise ServiceUnavailable(f"{self.host} kept failing to open the {label} issue in {repo}")
