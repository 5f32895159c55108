"""The local forge (default without GitHub credentials): proposals live in the audit store.

The branch is created in the repository by the workspace; this forge stores the proposal's
title and body, finds it again by branch, supersedes older ones, and keeps incidents and the
dependency dashboard (rows of state `incident` and `dashboard`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from bot.errors import UsageError
from bot.forges.base import DASHBOARD_TITLE, ApiUsage, ExistingProposal, Incident
from bot.models import Proposal, PublishedProposal

if TYPE_CHECKING:
    from bot.audit import AuditStore
    from bot.workspace import PushAuth

DASHBOARD_BRANCH = "dashboard/issue"  # the key of the stored dashboard, not a git branch


class LocalForge:
    """Proposals and incidents stored next to the audit trail."""

    name = "local"

    def __init__(self, audit: AuditStore | None) -> None:
        self._audit = audit

    @property
    def audit(self) -> AuditStore:
        """The store proposals live in (a planning-only forge has none)."""
        if self._audit is None:
            raise UsageError("the local forge was opened for planning only")
        return self._audit

    def clone_url(self, repository: str) -> str:
        """The local forge hosts no repositories."""
        raise UsageError(
            f"{repository} looks like owner/name, which needs a forge: pass a local path or a "
            "git URL, or configure ROTATION_BOT_GITHUB_TOKEN"
        )

    def push_auth(self, repository: str) -> PushAuth | None:
        """Local repositories and git URLs need no forge credentials."""
        return None

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The stored open proposal for `branch`."""
        row = self.audit.find_proposal(repo, branch)
        if row is None or row["state"] != "open":
            return None
        return ExistingProposal(
            url=_url(repo, branch),
            branch=branch,
            base_commit=row["base_commit"],
            head_commit=row["head_commit"],
            new_version=row["new_version"],
            body=row["body"],
        )

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Store (or update) the proposal; mark older ones of the same line superseded."""
        existing = self.audit.find_proposal(repo, proposal.branch)
        created = self.audit.save_proposal(
            repo,
            {
                "branch": proposal.branch,
                "runbook": proposal.runbook,
                "state": "open",
                "title": proposal.title,
                "body": proposal.body,
                "base_commit": proposal.base_commit,
                "head_commit": proposal.head_commit,
                "new_version": proposal.new_version,
                "run_id": proposal.run_id,
                "superseded_by": None,
            },
            by_run=proposal.run_id,
        )
        superseded = []
        if supersedes_prefix:
            for row in self.audit.open_proposals(repo, proposal.runbook):
                branch = row["branch"]
                if branch != proposal.branch and branch.startswith(supersedes_prefix):
                    self.audit.save_proposal(
                        repo,
                        {"branch": branch, "state": "superseded", "superseded_by": proposal.branch},
                        by_run=proposal.run_id,
                    )
                    superseded.append(branch)
        return PublishedProposal(
            url=_url(repo, proposal.branch),
            created=created,
            updated=not created and existing is not None,
            superseded=tuple(sorted(superseded)),
        )

    def api_usage(self) -> ApiUsage:
        """The local forge makes no API calls."""
        return ApiUsage()

    def ensure_incident(self, repo: str, incident: Incident) -> str | None:
        """Store one incident per runbook and target (as an `incident` proposal row)."""
        branch = f"incident/{incident.runbook}-{incident.target}"
        self.audit.save_proposal(
            repo,
            {
                "branch": branch,
                "runbook": incident.runbook,
                "state": "incident",
                "title": incident.title,
                "body": incident.body,
                "base_commit": "",
                "head_commit": "",
                "new_version": incident.target,
                "run_id": incident.run_id,
                "superseded_by": None,
            },
            by_run=incident.run_id,
        )
        return _url(repo, branch)

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Store the dashboard body (a `dashboard` proposal row); unchanged, nothing is written."""
        existing = self.audit.find_proposal(repo, DASHBOARD_BRANCH)
        if existing is None or existing["body"] != body:
            self.audit.save_proposal(
                repo,
                {
                    "branch": DASHBOARD_BRANCH,
                    "runbook": "-",
                    "state": "dashboard",
                    "title": DASHBOARD_TITLE,
                    "body": body,
                    "base_commit": "",
                    "head_commit": "",
                    "new_version": "-",
                    "run_id": run_id,
                    "superseded_by": None,
                },
                by_run=run_id,
            )
        return _url(repo, DASHBOARD_BRANCH)


def _url(repo: str, branch: str) -> str:
    return f"local:{repo}#{branch}"
