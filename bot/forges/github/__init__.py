"""GitHub (and GitHub Enterprise) as the forge, through PyGithub, split by concern:

- `client`: credentials (token or App), retries, conditional-request caching, request counting,
  repository access (clone URL, push auth, files, the App's repositories);
- `pulls`: the bot's pull requests (find, open, update, supersede, close, auto-merge);
- `issues`: notices (incidents, approvals) and the dependency dashboard issue;
- `comments`: permissions, reactions, replies and the one-per-subject comments;
- `advisories`: the advisory database.

`GitHubForge` is the `Forge` made of them.
"""

from __future__ import annotations

from bot.config import Settings
from bot.forges.base import Advisory, ApiUsage, ExistingProposal, Notice, Reaction
from bot.forges.github.advisories import Advisories
from bot.forges.github.client import GitHubClient, GitHubOptions, RequestBudget
from bot.forges.github.comments import Comments
from bot.forges.github.issues import (
    APPROVAL_LABEL,
    DASHBOARD_LABEL,
    DASHBOARD_MARKER,
    INCIDENT_LABEL,
    Issues,
)
from bot.forges.github.pulls import Pulls
from bot.models import Proposal, PublishedProposal
from bot.workspace import PushAuth

__all__ = [
    "APPROVAL_LABEL",
    "DASHBOARD_LABEL",
    "DASHBOARD_MARKER",
    "INCIDENT_LABEL",
    "GitHubForge",
    "GitHubOptions",
    "RequestBudget",
]


class GitHubForge:
    """Pull requests, comments and issues on GitHub or GitHub Enterprise."""

    name = "github"
    hosts_comments = True

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        app_id: str | None = None,
        app_key: str | None = None,
        options: GitHubOptions | None = None,
        budget: RequestBudget | None = None,
    ) -> None:
        """`budget`, when given, is spent one request at a time before each API request."""
        self.client = GitHubClient(
            base_url, token=token, app_id=app_id, app_key=app_key, options=options, budget=budget
        )
        self.pulls = Pulls(self.client)
        self.issues = Issues(self.client)
        self.comments = Comments(self.client)
        self.advisories = Advisories(self.client)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        options: GitHubOptions | None = None,
        budget: RequestBudget | None = None,
    ) -> GitHubForge:
        """The forge configured by `ROTATION_BOT_GITHUB_*` settings."""
        return cls(
            settings.github_url,
            token=settings.github_token,
            app_id=settings.github_app_id,
            app_key=settings.github_app_key,
            options=options,
            budget=budget,
        )

    # --- repositories ----------------------------------------------------------------------

    def clone_url(self, repository: str) -> str:
        """The repository's git URL, from the API (asked once per process)."""
        return self.client.clone_url(repository)

    def push_auth(self, repository: str) -> PushAuth | None:
        """The git HTTP header for fetching and pushing `repository`."""
        return self.client.push_auth(repository)

    def list_repositories(self) -> tuple[str, ...]:
        """Every repository the App's installations reach."""
        return self.client.list_repositories()

    def api_usage(self) -> ApiUsage:
        """Requests made so far by this forge (subtract two snapshots for one run)."""
        return self.client.api_usage()

    def find_commit_author(self, repo: str, sha: str) -> str | None:
        """The GitHub login that authored commit `sha`."""
        return self.pulls.find_commit_author(repo, sha)

    def branch_head(self, repo: str, branch: str, known: str | None = None) -> str:
        """The commit `branch` of `repo` points at now (`GET /repos/…/commits/BRANCH`, the id
        alone, conditional on `known`)."""
        return self.pulls.branch_head(repo, branch, known)

    def find_advisories(self, repo: str, package: str, version: str) -> tuple[Advisory, ...]:
        """Reviewed npm advisories affecting `package@version`."""
        return self.advisories.find(repo, package, version)

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        """A file's text at commit `ref`."""
        return self.client.read_file(repo, path, ref)

    # --- proposals -------------------------------------------------------------------------

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The open pull request whose head is `branch` (one conditional request)."""
        return self.pulls.find_proposal(repo, branch)

    def open_proposals(self, repo: str) -> tuple[ExistingProposal, ...]:
        """The bot's open pull requests."""
        return self.pulls.open_proposals(repo)

    def find_proposal_branch(self, repo: str, number: int) -> str | None:
        """The head branch of pull request `number`."""
        return self.pulls.find_proposal_branch(repo, number)

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Open the pull request, or update the open one for its branch; close superseded ones."""
        return self.pulls.ensure_proposal(repo, proposal, supersedes_prefix=supersedes_prefix)

    def close_proposal(self, repo: str, branch: str, comment: str) -> bool:
        """Comment on and close the open pull request of `branch`."""
        return self.pulls.close_proposal(repo, branch, comment)

    def enable_automerge(self, repo: str, branch: str) -> str | None:
        """GitHub's auto-merge for the open pull request of `branch`."""
        return self.pulls.enable_automerge(repo, branch)

    # --- comments and notices --------------------------------------------------------------

    def permission(self, repo: str, login: str) -> str:
        """`login`'s role on `repo`."""
        return self.comments.permission(repo, login)

    def react(self, repo: str, comment_id: int, content: Reaction) -> None:
        """Put a reaction on a comment."""
        self.comments.react(repo, comment_id, content)

    def reply(self, repo: str, number: int, body: str) -> None:
        """Comment on issue or pull request `number`."""
        self.comments.reply(repo, number, body)

    def ensure_comment(self, repo: str, branch: str, key: str, body: str) -> bool:
        """Comment once per `key` on the open pull request of `branch`."""
        number = self.pulls.find_number(repo, branch)
        if number is None:
            return False
        return self.comments.ensure_comment(repo, number, key, body)

    def ensure_latest_comment(
        self, repo: str, number: int, family: str, key: str, body: str, *, follow_up: bool = False
    ) -> bool:
        """Comment unless the newest comment of `family` on `number` carries `key` (with
        `follow_up`: unless `family` has none)."""
        return self.comments.ensure_comment(
            repo, number, key, body, family=family, follow_up=follow_up
        )

    def ensure_notice(self, repo: str, notice: Notice) -> str | None:
        """Open or update the notice's issue."""
        return self.issues.ensure_notice(repo, notice)

    def close_notice(self, repo: str, notice: Notice, comment: str) -> None:
        """Comment on and close the notice's issue."""
        self.issues.close_notice(repo, notice, comment)

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Open, or update in place, the one dashboard issue."""
        return self.issues.ensure_dashboard_issue(repo, body, run_id=run_id)
