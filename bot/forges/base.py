"""The forge interface: where proposals (pull requests), comments and notices go.

A forge never pushes code itself: the workspace publishes the branch, the forge records the
proposal.  Remote writes are idempotent (`ensure_*`); lookups that may find nothing are
`find_*` and return `None`.  Everything the bot asks of a forge is a method here, so nothing
above this package probes which forge it holds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from bot.models import Proposal, PublishedProposal

if TYPE_CHECKING:
    from bot.workspace import PushAuth

DASHBOARD_TITLE = "rotation-bot dashboard"
BRANCH_PREFIX = "rotation-bot/"
Reaction = Literal["eyes", "+1", "-1"]
NoticeKind = Literal["incident", "approval"]


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
class Notice:
    """An issue the bot keeps open about one subject: a verification failure that must not be
    bypassed (`incident`), or a major rotation waiting for `/rotate approve` (`approval`)."""

    kind: NoticeKind
    runbook: str
    target: str
    title: str
    body: str
    run_id: str = ""


@dataclass(frozen=True)
class Advisory:
    """A published security advisory affecting one package version."""

    id: str
    summary: str
    url: str
    vulnerable_range: str
    first_patched_version: str


class Forge(Protocol):
    """Where proposals go: the local store (default) or a GitHub-compatible API."""

    name: str
    # whether people comment there (so chat commands and comments on proposals exist)
    hosts_comments: bool

    # --- repositories ----------------------------------------------------------------------

    def clone_url(self, repository: str) -> str:
        """The git URL of `owner/name` on this forge."""
        ...

    def push_auth(self, repository: str) -> PushAuth | None:
        """The git HTTP auth for fetching and pushing `repository` (None: git needs none)."""
        ...

    def list_repositories(self) -> tuple[str, ...]:
        """Every repository the bot's credentials reach (`serve` without a configured list)."""
        ...

    def api_usage(self) -> ApiUsage:
        """API requests made so far by this forge (for the audit trail)."""
        ...

    def find_commit_author(self, repo: str, sha: str) -> str | None:
        """The forge login that authored commit `sha`, if the forge knows one."""
        ...

    def branch_head(self, repo: str, branch: str, known: str | None = None) -> str:
        """The commit `branch` of `repo` points at now (one API request, no git; `known`, the
        commit it pointed at last time, lets the forge answer "still that" cheaply)."""
        ...

    def find_advisories(self, repo: str, package: str, version: str) -> tuple[Advisory, ...]:
        """Reviewed npm security advisories that affect `package@version` (asked for `repo`)."""
        ...

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        """A file's text at commit `ref` (None when it does not exist there)."""
        ...

    # --- proposals -------------------------------------------------------------------------

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The open proposal whose head is `branch`, if any."""
        ...

    def open_proposals(self, repo: str) -> tuple[ExistingProposal, ...]:
        """Every open proposal of the bot (head branch under `rotation-bot/`) in `repo`."""
        ...

    def find_proposal_branch(self, repo: str, number: int) -> str | None:
        """The head branch of proposal (pull request) `number`, None when it is an issue."""
        ...

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Open the proposal, or update the open one for its branch; close (as superseded) any
        other open proposal whose branch starts with `supersedes_prefix`."""
        ...

    def close_proposal(self, repo: str, branch: str, comment: str) -> bool:
        """Comment on and close the open proposal of `branch`; False when none is open."""
        ...

    def enable_automerge(self, repo: str, branch: str) -> str | None:
        """Ask the forge to merge the open proposal of `branch` once its required checks pass;
        None when that is set, else why it could not be."""
        ...

    # --- comments and notices --------------------------------------------------------------

    def permission(self, repo: str, login: str) -> str:
        """`login`'s role on `repo` (admin, maintain, write, triage, read or none)."""
        ...

    def react(self, repo: str, comment_id: int, content: Reaction) -> None:
        """Put a reaction on a comment."""
        ...

    def reply(self, repo: str, number: int, body: str) -> None:
        """Comment on issue or proposal `number`."""
        ...

    def ensure_comment(self, repo: str, branch: str, key: str, body: str) -> bool:
        """Comment `body` on the open proposal of `branch` once per `key` (later calls with the
        same key write nothing); True when a comment was written."""
        ...

    def ensure_latest_comment(
        self, repo: str, number: int, family: str, key: str, body: str, *, follow_up: bool = False
    ) -> bool:
        """Comment `body` on issue or proposal `number` unless the newest of the bot's comments
        of `family` already carries `key` (`family/…`), so a verdict is said again only when it
        changes; with `follow_up`, only when `family` has a comment already (a verdict that
        replaces an earlier one).  True when a comment was written."""
        ...

    def ensure_notice(self, repo: str, notice: Notice) -> str | None:
        """Open or update the one notice of its kind for this runbook and target; its URL."""
        ...

    def close_notice(self, repo: str, notice: Notice, comment: str) -> None:
        """Comment on and close the open notice of its kind for this runbook and target."""
        ...

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Open, or update in place, the repository's one dependency dashboard issue with `body`
        (markdown); an unchanged body writes nothing.  `run_id` is the run whose audit records
        the change is chained to.  Returns its URL."""
        ...
