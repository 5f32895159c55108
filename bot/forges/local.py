"""The local forge (default without GitHub credentials): proposals live in the audit store.

The branch is created in the repository by the workspace; this forge stores the proposal's
title and body, finds it again by branch, supersedes and closes them, and keeps notices
(incidents, approvals), the bot's once-per-subject comments and the dependency dashboard (rows
of state `incident`, `approval`, `comment` and `dashboard`, each chained in the audit trail).
Nobody comments on a local repository, so there are no chat commands, permissions or reactions
here, and nothing is merged: that is the user's `git merge`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bot.errors import ConfigError, UsageError
from bot.forges.base import (
    BRANCH_PREFIX,
    DASHBOARD_TITLE,
    Advisory,
    ApiUsage,
    ExistingProposal,
    Notice,
    Reaction,
)
from bot.models import Proposal, PublishedProposal

if TYPE_CHECKING:
    from bot.audit import AuditStore
    from bot.workspace import PushAuth

DASHBOARD_BRANCH = "dashboard/issue"  # the key of the stored dashboard, not a git branch


class LocalForge:
    """Proposals, notices and comments stored next to the audit trail."""

    name = "local"
    hosts_comments = False

    def __init__(self, audit: AuditStore | None) -> None:
        self._audit = audit

    @property
    def audit(self) -> AuditStore:
        """The store proposals live in (a planning-only forge has none)."""
        if self._audit is None:
            raise UsageError("the local forge was opened for planning only")
        return self._audit

    # --- repositories ----------------------------------------------------------------------

    def clone_url(self, repository: str) -> str:
        """The local forge hosts no repositories."""
        raise UsageError(
            f"{repository} looks like owner/name, which needs a forge: pass a local path or a "
            "git URL, or configure ROTATION_BOT_GITHUB_TOKEN"
        )

    def push_auth(self, repository: str) -> PushAuth | None:
        """Local repositories and git URLs need no forge credentials."""
        return None

    def list_repositories(self) -> tuple[str, ...]:
        """The local forge knows no repositories of its own."""
        raise ConfigError(
            "nothing to serve: set ROTATION_BOT_REPOSITORIES (paths or git URLs, "
            "comma-separated), or GitHub App credentials to serve the App's repositories"
        )

    def api_usage(self) -> ApiUsage:
        """The local forge makes no API calls."""
        return ApiUsage()

    def find_commit_author(self, repo: str, sha: str) -> str | None:
        """Local commits have authors, not forge logins."""
        return None

    def branch_head(self, repo: str, branch: str, known: str | None = None) -> str:
        """The local forge hosts no repositories."""
        raise UsageError(f"{repo} looks like owner/name, which needs a forge")

    def find_advisories(self, repo: str, package: str, version: str) -> tuple[Advisory, ...]:
        """The local forge has no advisory database."""
        return ()

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        """Files are read from the repository itself, not through this forge."""
        return None

    # --- proposals -------------------------------------------------------------------------

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The stored open proposal for `branch`."""
        row = self.audit.find_proposal(repo, branch)
        if row is None or row["state"] != "open":
            return None
        return _existing(repo, row)

    def open_proposals(self, repo: str) -> tuple[ExistingProposal, ...]:
        """Every stored open proposal of `repo`."""
        return tuple(
            _existing(repo, row)
            for row in self.audit.open_proposals(repo)
            if str(row["branch"]).startswith(BRANCH_PREFIX)
        )

    def find_proposal_branch(self, repo: str, number: int) -> str | None:
        """Local proposals have no numbers."""
        return None

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Store (or update) the proposal; mark older ones of the same line superseded."""
        existing = self.find_proposal(repo, proposal.branch)
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
            created=created or existing is None,
            updated=existing is not None,
            superseded=tuple(sorted(superseded)),
        )

    def close_proposal(self, repo: str, branch: str, comment: str) -> bool:
        """Mark the stored open proposal of `branch` closed (the comment is its last word)."""
        row = self.audit.find_proposal(repo, branch)
        if row is None or row["state"] != "open":
            return False
        self.audit.save_proposal(
            repo, {"branch": branch, "state": "closed", "body": comment}, by_run=row["run_id"]
        )
        return True

    def enable_automerge(self, repo: str, branch: str) -> str | None:
        """Nothing merges on the local forge."""
        return "the local forge merges nothing; merge the branch yourself"

    # --- comments and notices --------------------------------------------------------------

    def permission(self, repo: str, login: str) -> str:
        """Nobody comments on the local forge, so nobody may command it."""
        return "none"

    def react(self, repo: str, comment_id: int, content: Reaction) -> None:
        """There are no comments to react to."""
        raise UsageError("the local forge has no comments")

    def reply(self, repo: str, number: int, body: str) -> None:
        """There are no issues to reply on."""
        raise UsageError("the local forge has no comments")

    def ensure_latest_comment(
        self, repo: str, number: int, family: str, key: str, body: str, *, follow_up: bool = False
    ) -> bool:
        """There are no issues or pull requests of people to comment on."""
        raise UsageError("the local forge has no comments")

    def ensure_comment(self, repo: str, branch: str, key: str, body: str) -> bool:
        """Store the comment once per `key` (a `comment` row beside the proposal)."""
        proposal = self.audit.find_proposal(repo, branch)
        stored = f"comment/{key}"
        if proposal is None or self.audit.find_proposal(repo, stored) is not None:
            return False
        self.audit.save_proposal(
            repo,
            _row(stored, proposal["runbook"], "comment", branch, body, proposal["run_id"]),
            by_run=proposal["run_id"],
        )
        return True

    def ensure_notice(self, repo: str, notice: Notice) -> str | None:
        """Store one notice per kind, runbook and target."""
        branch = f"{notice.kind}/{notice.runbook}-{notice.target}"
        self.audit.save_proposal(
            repo,
            {
                **_row(branch, notice.runbook, notice.kind, notice.title, notice.body, ""),
                "new_version": notice.target,
                "run_id": notice.run_id,
            },
            by_run=notice.run_id,
        )
        return _url(repo, branch)

    def close_notice(self, repo: str, notice: Notice, comment: str) -> None:
        """Mark the stored notice closed."""
        branch = f"{notice.kind}/{notice.runbook}-{notice.target}"
        row = self.audit.find_proposal(repo, branch)
        if row is not None and row["state"] == notice.kind:
            self.audit.save_proposal(
                repo, {"branch": branch, "state": "closed", "body": comment}, by_run=row["run_id"]
            )

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Store the dashboard body (a `dashboard` proposal row); unchanged, nothing is written."""
        existing = self.audit.find_proposal(repo, DASHBOARD_BRANCH)
        if existing is None or existing["body"] != body:
            self.audit.save_proposal(
                repo,
                _row(DASHBOARD_BRANCH, "-", "dashboard", DASHBOARD_TITLE, body, run_id),
                by_run=run_id,
            )
        return _url(repo, DASHBOARD_BRANCH)


def _row(
    branch: str, runbook: str, state: str, title: str, body: str, run_id: str
) -> dict[str, Any]:
    return {
        "branch": branch,
        "runbook": runbook,
        "state": state,
        "title": title,
        "body": body,
        "base_commit": "",
        "head_commit": "",
        "new_version": "-",
        "run_id": run_id,
        "superseded_by": None,
    }


def _existing(repo: str, row: dict[str, Any]) -> ExistingProposal:
    return ExistingProposal(
        url=_url(repo, row["branch"]),
        branch=row["branch"],
        base_commit=row["base_commit"],
        head_commit=row["head_commit"],
        new_version=row["new_version"],
        body=row["body"],
    )


def _url(repo: str, branch: str) -> str:
    return f"local:{repo}#{branch}"
