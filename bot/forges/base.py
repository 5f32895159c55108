"""The forge interface: where proposals (pull requests) and incidents go.

A forge never pushes code itself: the workspace publishes the branch, the forge records the
proposal.  Remote writes are idempotent (`ensure_*`); lookups that may find nothing are
`find_*` and return `None`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from bot.models import Proposal, PublishedProposal

if TYPE_CHECKING:
    from bot.workspace import PushAuth

DASHBOARD_TITLE = "rotation-bot dashboard"


@dataclass(frozen=True)
class ApiUsage:
    """How many API requests were made, and how many were answered 304 (free on GitHub)."""

    requests: int = 0
    not_modified: int = 0

    def __sub__(self, other: ApiUsage) -> ApiUsage:
        return ApiUsage(self.requests - other.requests, self.not_modified - other.not_modified)


@dataclass(frozen=True)
class ExistingProposal:
    """An open proposal found on the forge for a branch."""

    url: str
    branch: str
    base_commit: str
    head_commit: str
    new_version: str
    body: str


@dataclass(frozen=True)
class Incident:
    """A verification failure that must not be bypassed: what failed and what to do."""

    runbook: str
    target: str
    title: str
    body: str
    run_id: str = ""


class Forge(Protocol):
    """Where proposals go: the local store (default) or a GitHub-compatible API."""

    name: str

    def clone_url(self, repository: str) -> str:
        """The git URL of `owner/name` on this forge."""
        ...

    def push_auth(self, repository: str) -> PushAuth | None:
        """The git HTTP auth for fetching and pushing `repository` (None: git needs none)."""
        ...

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The open proposal whose head is `branch`, if any."""
        ...

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Open the proposal, or update the open one for its branch; close (as superseded) any
        other open proposal whose branch starts with `supersedes_prefix`."""
        ...

    def ensure_incident(self, repo: str, incident: Incident) -> str | None:
        """Open or update the one incident for this runbook and target; returns its URL."""
        ...

    def api_usage(self) -> ApiUsage:
        """API requests made so far by this forge (for the audit trail)."""
        ...

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Open, or update in place, the repository's one dependency dashboard issue with `body`
        (markdown); an unchanged body writes nothing.  `run_id` is the run whose audit records
        the change is chained to.  Returns its URL."""
        ...
