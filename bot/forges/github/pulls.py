"""Pull requests on GitHub: the bot's proposals, found, opened, updated, superseded, closed and
set to merge automatically.

Writes are idempotent and never duplicate a pull request: the open pull request for the head
branch is looked up first and updated only when its title, body or base changed (bodies are
deterministic, so a rerun writes nothing); a create that fails in a way that may have succeeded
(a 5xx or a timeout) is followed by another look before it is retried; GitHub's 422 "A pull
request already exists" means "find it".  The body sent ends with a hidden line
(`<!-- rotation-bot-proposal {"base_commit": …, "new_version": …} -->`) that `find_proposal`
reads back, so an up-to-date proposal is recognised from one list request.  Labels,
reviewers and assignees are set when the pull request is opened (a later run only adds missing
labels: it never re-requests a review or re-assigns someone a maintainer removed).

Automatic merging is GitHub's own auto-merge (GraphQL `enablePullRequestAutoMerge`: REST has
no equivalent), which merges once the base branch's required checks pass; the bot never merges
anything itself.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from github import Github
from github.PullRequest import PullRequest
from github.Repository import Repository

from bot.config import check_branch_name
from bot.errors import (
    ConfigError,
    InvalidRemoteData,
    RepositoryError,
    ServiceUnavailable,
    redact,
)
from bot.forges.base import BRANCH_PREFIX, ExistingProposal
from bot.forges.github.client import (
    AlreadyExists,
    DraftUnsupported,
    GitHubClient,
    Uncertain,
    same_repository,
    split_name,
    string_field,
)
from bot.models import Proposal, PublishedProposal, strict_version

log = logging.getLogger(__name__)

_PROPOSAL_MARKER = re.compile(r"\n*<!-- rotation-bot-proposal (\{[^\n]*\}) -->\n*\Z")
_SHA = re.compile(r"^[0-9a-f]{40}$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
AUTOMERGE = """
mutation($pullRequestId: ID!, $mergeMethod: PullRequestMergeMethod!) {
  enablePullRequestAutoMerge(input: {pullRequestId: $pullRequestId, mergeMethod: $mergeMethod}) {
    pullRequest { number autoMergeRequest { enabledAt mergeMethod } }
  }
}
"""


@dataclass(frozen=True)
class _Pull:
    """The fields of a pull request this module uses, validated."""

    number: int
    url: str
    title: str
    body: str
    head: str
    head_repo: str
    head_sha: str
    base: str
    labels: frozenset[str]
    raw: Mapping[str, Any] = field(compare=False, repr=False)


def parse_pull(raw: object, *, source: str) -> _Pull:
    if not isinstance(raw, Mapping):
        raise InvalidRemoteData(f"{source} answered with a pull request that is not an object")
    head, base = raw.get("head"), raw.get("base")
    number = raw.get("number")
    if (
        not isinstance(head, Mapping)
        or not isinstance(base, Mapping)
        or not isinstance(number, int)
    ):
        raise InvalidRemoteData(f"{source} answered with a pull request without number/head/base")
    head_sha = string_field(head.get("sha"), source=source, what="head sha")
    if not _SHA.match(head_sha):
        raise InvalidRemoteData(f"{source} gave head sha {head_sha!r}, expected 40 hex digits")
    head_repo = head.get("repo")
    labels = raw.get("labels") or []
    return _Pull(
        number=number,
        url=string_field(raw.get("html_url"), source=source, what="html_url"),
        title=string_field(raw.get("title"), source=source, what="title"),
        body=str(raw.get("body") or ""),
        head=string_field(head.get("ref"), source=source, what="head ref"),
        head_repo=str(head_repo.get("full_name")) if isinstance(head_repo, Mapping) else "",
        head_sha=head_sha,
        base=string_field(base.get("ref"), source=source, what="base ref"),
        labels=frozenset(str(label.get("name")) for label in labels if isinstance(label, Mapping)),
        raw=raw,
    )


def with_metadata(proposal: Proposal) -> str:
    """The body as sent: the proposal's body plus a hidden line the bot reads back."""
    metadata = json.dumps(
        {"base_commit": proposal.base_commit, "new_version": proposal.new_version},
        sort_keys=True,
    )
    return f"{redact(proposal.body).rstrip()}\n\n<!-- rotation-bot-proposal {metadata} -->\n"


def existing_proposal(pull: _Pull, *, source: str) -> ExistingProposal:
    match = _PROPOSAL_MARKER.search(pull.body)
    base_commit, new_version = "", ""
    body = pull.body
    if match:
        body = pull.body[: match.start()] + "\n"
        try:
            metadata = json.loads(match.group(1))
        except ValueError:
            metadata = {}
        if isinstance(metadata, dict):
            candidate = metadata.get("base_commit")
            base_commit = candidate if isinstance(candidate, str) and _SHA.match(candidate) else ""
            try:
                new_version = strict_version(metadata.get("new_version"), source=source)
            except InvalidRemoteData:
                new_version = ""  # unreadable: the proposal counts as out of date
    return ExistingProposal(
        url=pull.url,
        branch=pull.head,
        base_commit=base_commit,
        head_commit=pull.head_sha,
        new_version=new_version,
        body=body,
    )


class Pulls:
    """The bot's pull requests in the repositories one `GitHubClient` reaches."""

    def __init__(self, client: GitHubClient) -> None:
        self.client = client
        self.host = client.host
        self.options = client.options

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The open pull request whose head is `branch` (one conditional request)."""
        pull = self._find_pull(repo, branch)
        return None if pull is None else existing_proposal(pull, source=f"{self.host} ({repo})")

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Open the pull request, or update the open one for its branch; close superseded ones."""
        client = self.client.client_for(repo)
        if supersedes_prefix:
            open_pulls = self._open_pulls(repo)
            pull = next((p for p in open_pulls if p.head == proposal.branch), None)
        else:
            open_pulls = []
            pull = self._find_pull(repo, proposal.branch)
        created = pull is None
        updated = False
        if pull is None:
            pull, created = self._create_pull(client, repo, proposal)
        if created:
            self._decorate(client, repo, pull, proposal)
        else:
            updated = self._update_pull(client, repo, pull, proposal)
        superseded = []
        for other in open_pulls:  # listed only when there is a prefix
            if other.head != proposal.branch and other.head.startswith(str(supersedes_prefix)):
                self._close_superseded(client, repo, other, pull)
                superseded.append(other.head)
        log.info(
            "pull request ensured",
            extra={
                "repo": repo,
                "url": pull.url,
                "result": "opened" if created else "updated" if updated else "unchanged",
                "superseded": superseded,
            },
        )
        return PublishedProposal(
            url=pull.url, created=created, updated=updated, superseded=tuple(sorted(superseded))
        )

    def _find_pull(self, repo: str, branch: str) -> _Pull | None:
        owner, name = split_name(repo)
        client = self.client.client_for(repo)
        items = self.client.list_all(
            client,
            f"/repos/{quote(owner)}/{quote(name)}/pulls",
            {"state": "open", "head": f"{owner}:{branch}"},
        )
        pulls = [parse_pull(item, source=f"{self.host} ({repo})") for item in items]
        return next(
            (p for p in pulls if p.head == branch and same_repository(p.head_repo, repo)), None
        )

    def _open_pulls(self, repo: str) -> list[_Pull]:
        owner, name = split_name(repo)
        items = self.client.list_all(
            self.client.client_for(repo),
            f"/repos/{quote(owner)}/{quote(name)}/pulls",
            {"state": "open"},
        )
        pulls = [parse_pull(item, source=f"{self.host} ({repo})") for item in items]
        return [p for p in pulls if same_repository(p.head_repo, repo)]

    def _create_pull(self, client: Github, repo: str, proposal: Proposal) -> tuple[_Pull, bool]:
        """Create the pull request; after an uncertain failure, look again before retrying."""
        repository = client.get_repo(repo)
        body = with_metadata(proposal)
        draft = proposal.draft
        for attempt in range(1, self.options.attempts + 1):
            try:
                created = self._post_pull(repository, proposal, body, draft=draft)
                return parse_pull(created.raw_data, source=f"{self.host} ({repo})"), True
            except AlreadyExists:
                found = self._find_pull(repo, proposal.branch)
                if found is None:
                    raise ServiceUnavailable(
                        f"{self.host} says a pull request for {proposal.branch} exists but does "
                        "not list it; try again later"
                    ) from None
                return found, False
            except DraftUnsupported:
                log.warning(
                    "draft pull requests unsupported here; opening a regular one",
                    extra={"repo": repo},
                )
                draft = False
                continue
            except Uncertain:
                found = self._find_pull(repo, proposal.branch)
                if found is not None:
                    return found, True
                log.warning(
                    "creating the pull request failed; retrying",
                    extra={"repo": repo, "attempt": attempt},
                )
                self.options.sleep(self.options.backoff * attempt)
        raise ServiceUnavailable(
            f"{self.host} kept failing to open the pull request for {proposal.branch}; "
            "try again later"
        )

    def _post_pull(
        self, repository: Repository, proposal: Proposal, body: str, *, draft: bool
    ) -> PullRequest:
        return self.client.call(
            f"opening a pull request for {proposal.branch}",
            lambda: repository.create_pull(
                base=proposal.base_branch,
                head=proposal.branch,
                title=redact(proposal.title),
                body=body,
                draft=draft,
                maintainer_can_modify=False,
            ),
            idempotent=False,
        )

    def _update_pull(self, client: Github, repo: str, pull: _Pull, proposal: Proposal) -> bool:
        body = with_metadata(proposal)
        title = redact(proposal.title)
        changed = (pull.title, pull.body, pull.base) != (title, body, proposal.base_branch)
        handle = client.create_from_raw_data(PullRequest, dict(pull.raw))
        if changed:
            self.client.call(
                f"updating {pull.url}",
                lambda: handle.edit(title=title, body=body, base=proposal.base_branch),
                idempotent=True,
            )
        missing = [label for label in proposal.labels if label not in pull.labels]
        if missing:
            self.client.call(
                f"labelling {pull.url}", lambda: handle.add_to_labels(*missing), idempotent=True
            )
        return bool(changed or missing)

    def _decorate(self, client: Github, repo: str, pull: _Pull, proposal: Proposal) -> None:
        """Labels, assignees and reviewers of a pull request this run opened.

        They are applied once, at creation: re-requesting a review that was given, or
        re-assigning someone a maintainer removed, would work against the people involved.
        A reviewer GitHub refuses (not a collaborator) is a warning, not a lost pull request.
        """
        handle = client.create_from_raw_data(PullRequest, dict(pull.raw))
        actions: list[tuple[str, Callable[[], object]]] = []
        if proposal.labels:
            actions.append(("labels", lambda: handle.add_to_labels(*proposal.labels)))
        if proposal.assignees:
            actions.append(("assignees", lambda: handle.add_to_assignees(*proposal.assignees)))
        if proposal.reviewers:
            reviewers = list(proposal.reviewers)
            actions.append(("reviewers", lambda: handle.create_review_request(reviewers=reviewers)))
        for what, action in actions:
            try:
                self.client.call(f"setting {what} on {pull.url}", action, idempotent=True)
            except ConfigError as error:
                log.warning(
                    "could not set a pull request field",
                    extra={"repo": repo, "url": pull.url, "field": what, "error": error.message},
                )

    def _close_superseded(self, client: Github, repo: str, old: _Pull, new: _Pull) -> None:
        handle = client.create_from_raw_data(PullRequest, dict(old.raw))
        comment = f"Superseded by #{new.number} ({new.url}); closing. — rotation-bot"
        self.client.call(
            f"commenting on {old.url}",
            lambda: handle.create_issue_comment(comment),
            idempotent=False,
            uncertain_is_error=True,
        )
        self.client.call(f"closing {old.url}", lambda: handle.edit(state="closed"), idempotent=True)
        log.info("superseded pull request closed", extra={"repo": repo, "url": old.url})

    # --- incidents -----------------------------------------------------------------------

    # --- lifecycle -----------------------------------------------------------------------

    def open_proposals(self, repo: str) -> tuple[ExistingProposal, ...]:
        """Every open pull request whose head is a bot branch of `repo` itself."""
        source = f"{self.host} ({repo})"
        return tuple(
            existing_proposal(pull, source=source)
            for pull in self._open_pulls(repo)
            if pull.head.startswith(BRANCH_PREFIX)
        )

    def find_number(self, repo: str, branch: str) -> int | None:
        """The number of the open pull request of `branch`."""
        pull = self._find_pull(repo, branch)
        return None if pull is None else pull.number

    def find_proposal_branch(self, repo: str, number: int) -> str | None:
        """The head branch of pull request `number` (None: it is an issue, or not there)."""
        owner, name = split_name(repo)
        try:
            data = self.client.get(
                repo, f"/repos/{quote(owner)}/{quote(name)}/pulls/{number}", f"reading #{number}"
            )
        except RepositoryError:  # 404: an issue, not a pull request
            return None
        pull = parse_pull(data, source=f"{self.host} ({repo})")
        return pull.head if same_repository(pull.head_repo, repo) else None

    def close_proposal(self, repo: str, branch: str, comment: str) -> bool:
        """Comment on and close the open pull request of `branch`; False when none is open."""
        pull = self._find_pull(repo, branch)
        if pull is None:
            return False
        client = self.client.client_for(repo)
        handle = client.create_from_raw_data(PullRequest, dict(pull.raw))
        self.client.call(
            f"commenting on {pull.url}",
            lambda: handle.create_issue_comment(redact(comment)),
            idempotent=False,
            uncertain_is_error=True,
        )
        self.client.call(
            f"closing {pull.url}", lambda: handle.edit(state="closed"), idempotent=True
        )
        log.info("pull request closed", extra={"repo": repo, "url": pull.url})
        return True

    def enable_automerge(self, repo: str, branch: str) -> str | None:
        """Turn on GitHub's auto-merge (squash) for the open pull request of `branch`: GitHub
        merges it when the base branch's required checks pass.  None when it is on, else
        GitHub's reason (auto-merge not allowed in the repository, no required checks, …)."""
        pull = self._find_pull(repo, branch)
        if pull is None:
            return f"no open pull request for {branch}"
        node = pull.raw.get("node_id")
        if not isinstance(node, str) or not node:
            raise InvalidRemoteData(f"{self.host} gave {pull.url} without a node_id")
        client = self.client.client_for(repo)
        variables = {"pullRequestId": node, "mergeMethod": "SQUASH"}
        try:
            self.client.call(
                f"enabling auto-merge on {pull.url}",
                lambda: client.requester.graphql_query(AUTOMERGE, variables),
                idempotent=True,
            )
        except ConfigError as error:  # GitHub's refusal: a 4xx or a GraphQL error
            log.warning("auto-merge not enabled", extra={"repo": repo, "error": error.message})
            return error.message
        log.info("auto-merge enabled", extra={"repo": repo, "url": pull.url})
        return None

    def branch_head(self, repo: str, branch: str, known: str | None = None) -> str:
        """The commit `branch` of `repo` points at now: the commit id alone (GitHub's
        `application/vnd.github.sha` media type, not the commit and its diff), asked on
        condition that it is no longer `known` (a 304, which GitHub does not count against the
        rate limit, means it still is)."""
        try:
            check_branch_name(branch)
        except ValueError as error:
            raise InvalidRemoteData(f"{repo}: {error}") from None
        condition = known if known is not None and _SHA.match(known) else None
        owner, name = split_name(repo)
        path = f"/repos/{quote(owner)}/{quote(name)}/commits/{quote(branch, safe='')}"
        text = self.client.get_text(
            repo,
            path,
            f"reading the head of {branch}",
            media_type="application/vnd.github.sha",
            etag=f'"{condition}"' if condition is not None else None,
        )
        if text is None:
            if condition is None:
                raise InvalidRemoteData(f"{repo}: the API answered 304 for {branch} unasked")
            return condition
        sha = text.strip()
        if not _SHA.match(sha):
            raise InvalidRemoteData(f"{repo}: the API gave no commit id for {branch}")
        return sha

    def find_commit_author(self, repo: str, sha: str) -> str | None:
        """The GitHub login of commit `sha`'s author (None for an author GitHub cannot map)."""
        if not _SHA.match(sha):
            raise InvalidRemoteData(f"{sha!r} is not a commit id")
        owner, name = split_name(repo)
        data = self.client.get(
            repo, f"/repos/{quote(owner)}/{quote(name)}/commits/{sha}", f"reading commit {sha[:8]}"
        )
        author = data.get("author") if isinstance(data, Mapping) else None
        login = author.get("login") if isinstance(author, Mapping) else None
        return login if isinstance(login, str) and _LOGIN.match(login) else None
