"""GitHub (and GitHub Enterprise) as the forge: pull requests, incident issues and the dependency
dashboard issue, via PyGithub.

Credentials are a token or a GitHub App (app id + private key → an installation token per
account, refreshed by PyGithub before it expires).  Both are registered for redaction, PyGithub's
own debug log is redacted, and a token leaves this module only as an HTTP header: in API
requests, and in `push_auth`, which hands git an `Authorization: basic …` header through the
environment of one command (never a URL or a git config).

Writes are idempotent and never duplicate a pull request: the open pull request for the head
branch is looked up first and updated only when its title, body or base changed (bodies are
deterministic, so a rerun writes nothing); a create that fails in a way that may have succeeded
(a 5xx or a timeout) is followed by another look before it is retried; GitHub's 422 "A pull
request already exists" means "find it".  The body sent ends with a hidden line
(`<!-- rotation-bot-proposal {"base_commit": …, "new_version": …} -->`) that `find_proposal`
reads back, so an up-to-date proposal is recognised from one list request.  Labels, reviewers
and assignees are set when the pull request is opened (a later run only adds missing labels: it
never re-requests a review or re-assigns someone a maintainer removed).

PyGithub's own retries are off (they would repeat a POST after a 5xx): this module retries
reads, and honours secondary rate limits (403/429 with `retry-after`) for every request, since
GitHub did not process those.

List reads are conditional (`If-None-Match` with the last `ETag`): a 304 costs nothing against
GitHub's rate limit, so an idle cycle that finds its proposal unchanged is one free request.
Every request is counted (`api_usage()`), for the audit trail.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import quote

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from github import Auth, Github, GithubIntegration
from github.GithubException import GithubException
from github.InstallationAuthorization import InstallationAuthorization
from github.Issue import Issue
from github.PullRequest import PullRequest
from github.Repository import Repository
from github.Requester import Requester

from bot.config import Settings
from bot.errors import (
    BotError,
    ConfigError,
    InvalidRemoteData,
    RepositoryError,
    ServiceUnavailable,
    redact,
    register_secret,
)
from bot.forges.base import DASHBOARD_TITLE, ApiUsage, ExistingProposal, Incident
from bot.models import Proposal, PublishedProposal, strict_version
from bot.sources.http import USER_AGENT, host_of
from bot.workspace import PushAuth

log = logging.getLogger(__name__)

INCIDENT_LABEL = "rotation-bot-incident"
DASHBOARD_LABEL = "rotation-bot-dashboard"
DASHBOARD_MARKER = "<!-- rotation-bot-dashboard -->"
_PROPOSAL_MARKER = re.compile(r"\n*<!-- rotation-bot-proposal (\{[^\n]*\}) -->\n*\Z")
_INCIDENT_MARKER = "<!-- rotation-bot-incident {runbook}@{target} -->"
_SHA = re.compile(r"^[0-9a-f]{40}$")
_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

T = TypeVar("T")


# --- counting and auth ---------------------------------------------------------------------


class _Counter:
    """A thread-safe request counter shared by every client of one forge."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.not_modified = 0

    def add(self, *, not_modified: bool = False) -> None:
        with self._lock:
            if not_modified:
                self.not_modified += 1
            else:
                self.requests += 1

    def snapshot(self) -> ApiUsage:
        with self._lock:
            return ApiUsage(self.requests, self.not_modified)


class _CountingToken(Auth.Token):
    """A token that counts each request it authenticates (PyGithub calls this once per request)."""

    def __init__(self, token: str, counter: _Counter) -> None:
        super().__init__(token)
        self._counter = counter

    def authentication(self, headers: dict[str, str]) -> None:
        self._counter.add()
        super().authentication(headers)


class _CountingAppAuth(Auth.AppAuth):
    """App (JWT) auth that counts its requests and hands out counting installation auths."""

    def __init__(self, app_id: str, private_key: str, counter: _Counter) -> None:
        super().__init__(app_id, private_key)
        self._counter = counter

    def authentication(self, headers: dict[str, str]) -> None:
        self._counter.add()
        super().authentication(headers)

    def get_installation_auth(
        self,
        installation_id: int,
        token_permissions: dict[str, str] | None = None,
        requester: Requester | None = None,
    ) -> Auth.AppInstallationAuth:
        return _CountingInstallationAuth(
            self, installation_id, token_permissions, requester, counter=self._counter
        )


class _CountingInstallationAuth(Auth.AppInstallationAuth):
    """An installation token (refreshed by PyGithub), registered for redaction when issued."""

    def __init__(
        self,
        app_auth: Auth.AppAuth,
        installation_id: int,
        token_permissions: dict[str, str] | None,
        requester: Requester | None,
        *,
        counter: _Counter,
    ) -> None:
        super().__init__(app_auth, installation_id, token_permissions, requester)
        self._counter = counter

    def authentication(self, headers: dict[str, str]) -> None:
        token = self.token  # may fetch a fresh installation token (counted by the App auth)
        self._counter.add()
        headers["Authorization"] = f"{self.token_type} {token}"

    def _get_installation_authorization(self) -> InstallationAuthorization:
        authorization = super()._get_installation_authorization()
        register_secret(authorization.token)
        return authorization


_TOKEN_FIELD = re.compile(r'("token"\s*:\s*")[^"]*(")')


class _RedactingFilter(logging.Filter):
    """PyGithub logs response bodies at DEBUG, the access-token response among them (before
    this module has seen, let alone registered, the new token): mask `"token": "…"` and every
    registered secret."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _TOKEN_FIELD.sub(r"\1***\2", redact(record.getMessage()))
        record.args = None
        return True


_FILTER = _RedactingFilter()


def _redact_pygithub_logs() -> None:
    for name in ("github", "github.Requester", "github.GithubRetry"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


# --- options and parsed answers ------------------------------------------------------------


@dataclass(frozen=True)
class GitHubOptions:
    """Transport knobs: timeouts, retries, pacing (tests set the pacing and waits to zero)."""

    timeout: int = 15
    attempts: int = 4
    backoff: float = 1.0
    max_retry_after: float = 120.0
    secondary_wait: float = 60.0
    seconds_between_requests: float = 0.25
    seconds_between_writes: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep, compare=False)


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


@dataclass(frozen=True)
class _Listing:
    """A cached list answer and its ETag."""

    etag: str
    items: tuple[Mapping[str, Any], ...]


class _Uncertain(Exception):
    """A write failed in a way that may have succeeded (5xx, timeout): look before retrying."""


class _AlreadyExists(Exception):
    """GitHub's 422 "A pull request already exists"."""


def _string(value: object, *, source: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRemoteData(f"{source} answered without a valid {what}")
    return value


def _parse_pull(raw: object, *, source: str) -> _Pull:
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
    head_sha = _string(head.get("sha"), source=source, what="head sha")
    if not _SHA.match(head_sha):
        raise InvalidRemoteData(f"{source} gave head sha {head_sha!r}, expected 40 hex digits")
    head_repo = head.get("repo")
    labels = raw.get("labels") or []
    return _Pull(
        number=number,
        url=_string(raw.get("html_url"), source=source, what="html_url"),
        title=_string(raw.get("title"), source=source, what="title"),
        body=str(raw.get("body") or ""),
        head=_string(head.get("ref"), source=source, what="head ref"),
        head_repo=str(head_repo.get("full_name")) if isinstance(head_repo, Mapping) else "",
        head_sha=head_sha,
        base=_string(base.get("ref"), source=source, what="base ref"),
        labels=frozenset(str(label.get("name")) for label in labels if isinstance(label, Mapping)),
        raw=raw,
    )


def _with_metadata(proposal: Proposal) -> str:
    """The body as sent: the proposal's body plus a hidden line the bot reads back."""
    metadata = json.dumps(
        {"base_commit": proposal.base_commit, "new_version": proposal.new_version},
        sort_keys=True,
    )
    return f"{redact(proposal.body).rstrip()}\n\n<!-- rotation-bot-proposal {metadata} -->\n"


def _existing(pull: _Pull, *, source: str) -> ExistingProposal:
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


def _split(repo: str) -> tuple[str, str]:
    owner, _, name = repo.partition("/")
    if not (_NAME_PART.match(owner) and _NAME_PART.match(name)):
        raise RepositoryError(f"{repo!r} is not owner/name of a GitHub repository")
    return owner, name


def _message(error: GithubException) -> str:
    data = error.data
    parts = []
    if isinstance(data, Mapping):
        if isinstance(data.get("message"), str):
            parts.append(data["message"])
        for item in data.get("errors") or []:
            if isinstance(item, Mapping) and isinstance(item.get("message"), str):
                parts.append(item["message"])
    return redact("; ".join(parts) or f"HTTP {error.status}")


def _rate_limit_wait(error: GithubException, default: float) -> float | None:
    """Seconds to wait on a secondary rate limit (`retry-after`, else `default`), else None.

    An exhausted primary limit is not waited for (it resets within the hour): None.
    """
    if error.status not in (403, 429) or _primary_exhausted(error):
        return None
    headers = {key.lower(): value for key, value in (error.headers or {}).items()}
    value = str(headers.get("retry-after", ""))
    if value.isdigit():
        return float(value)
    if Requester.isSecondaryRateLimitError(_message(error)):
        return default
    return None


# --- the forge ---------------------------------------------------------------------------


class GitHubForge:
    """Pull requests and incidents on GitHub or GitHub Enterprise, through PyGithub."""

    name = "github"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | None = None,
        app_id: str | None = None,
        app_key: str | None = None,
        options: GitHubOptions | None = None,
    ) -> None:
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"ROTATION_BOT_GITHUB_URL {base_url!r} must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)
        self.options = options or GitHubOptions()
        self._counter = _Counter()
        self._lock = threading.Lock()
        self._listings: dict[tuple[str, tuple[tuple[str, str], ...]], _Listing] = {}
        self._clone_urls: dict[str, str] = {}
        self._installations: dict[str, int] = {}
        self._clients: dict[int, Github] = {}
        _redact_pygithub_logs()
        if token:
            register_secret(token)
            self._token_client: Github | None = self._client(_CountingToken(token, self._counter))
            self._app: _CountingAppAuth | None = None
            return
        if not (app_id and app_key):
            raise ConfigError(
                "the GitHub forge needs ROTATION_BOT_GITHUB_TOKEN, or ROTATION_BOT_GITHUB_APP_ID "
                "and ROTATION_BOT_GITHUB_APP_KEY (or their _FILE variants)"
            )
        register_secret(app_key)
        if not app_id.strip().isdigit():
            raise ConfigError(f"ROTATION_BOT_GITHUB_APP_ID {app_id!r} must be the App's number")
        try:
            load_pem_private_key(app_key.encode(), password=None)
        except (ValueError, TypeError) as error:
            raise ConfigError(
                "ROTATION_BOT_GITHUB_APP_KEY is not an unencrypted PEM private key; use the "
                "key file GitHub generated for the App"
            ) from error
        self._token_client = None
        self._app = _CountingAppAuth(app_id.strip(), app_key, self._counter)
        self._integration = GithubIntegration(
            auth=self._app,
            base_url=self.base_url,
            timeout=self.options.timeout,
            user_agent=USER_AGENT,
            retry=None,
            seconds_between_requests=self.options.seconds_between_requests,
            seconds_between_writes=self.options.seconds_between_writes,
        )

    @classmethod
    def from_settings(
        cls, settings: Settings, *, options: GitHubOptions | None = None
    ) -> GitHubForge:
        """The forge configured by `ROTATION_BOT_GITHUB_*` settings."""
        return cls(
            settings.github_url,
            token=settings.github_token,
            app_id=settings.github_app_id,
            app_key=settings.github_app_key,
            options=options,
        )

    def _client(self, auth: Auth.Auth) -> Github:
        return Github(
            auth=auth,
            base_url=self.base_url,
            timeout=self.options.timeout,
            user_agent=USER_AGENT,
            retry=None,
            seconds_between_requests=self.options.seconds_between_requests,
            seconds_between_writes=self.options.seconds_between_writes,
            lazy=True,
        )

    # --- public interface ----------------------------------------------------------------

    def api_usage(self) -> ApiUsage:
        """Requests made so far by this forge (subtract two snapshots for one run)."""
        return self._counter.snapshot()

    def clone_url(self, repository: str) -> str:
        """The repository's git URL, from the API (asked once per process)."""
        owner, name = _split(repository)
        with self._lock:
            cached = self._clone_urls.get(repository)
        if cached:
            return cached
        client = self.client_for(repository)
        path = f"/repos/{quote(owner)}/{quote(name)}"
        _, data = self._call(
            f"reading {repository}",
            lambda: client.requester.requestJsonAndCheck("GET", path),
            idempotent=True,
        )
        source = f"{self.host} ({repository})"
        if not isinstance(data, Mapping):
            raise InvalidRemoteData(f"{source} answered with a repository that is not an object")
        url = _string(data.get("clone_url"), source=source, what="clone_url")
        if not url.startswith(("https://", "http://")):
            raise InvalidRemoteData(f"{source} gave clone_url {url!r}, expected an http(s) URL")
        with self._lock:
            self._clone_urls[repository] = url
        return url

    def push_auth(self, repository: str | None = None) -> PushAuth | None:
        """The git HTTP header for pushing to `repository` (App auth needs the repository)."""
        if self._token_client is not None:
            auth = self._token_client.requester.auth
        else:
            if repository is None:
                raise ConfigError("with GitHub App credentials, push_auth needs the repository")
            auth = self.client_for(repository).requester.auth
        if auth is None:
            raise ConfigError("the GitHub forge has no credentials to push with")
        token = self._call("issuing a token", lambda: auth.token, idempotent=True)
        register_secret(token)
        header = base64.b64encode(f"x-access-token:{token}".encode()).decode("ascii")
        register_secret(header)
        return PushAuth(header=f"Authorization: basic {header}")

    def list_repositories(self) -> tuple[str, ...]:
        """Every repository the App's installations reach (for `serve` without a list)."""
        if self._app is None:
            raise ConfigError(
                "with a GitHub token, list the repositories in ROTATION_BOT_REPOSITORIES"
            )
        names: set[str] = set()
        for installation_id in sorted(set(self._installation_map().values())):
            client = self._installation_client(installation_id)
            for item in self._list(client, "/installation/repositories", {}, key="repositories"):
                names.add(_string(item.get("full_name"), source=self.host, what="full_name"))
        return tuple(sorted(names))

    def find_proposal(self, repo: str, branch: str) -> ExistingProposal | None:
        """The open pull request whose head is `branch` (one conditional request)."""
        pull = self._find_pull(repo, branch)
        return None if pull is None else _existing(pull, source=f"{self.host} ({repo})")

    def ensure_proposal(
        self, repo: str, proposal: Proposal, *, supersedes_prefix: str | None
    ) -> PublishedProposal:
        """Open the pull request, or update the open one for its branch; close superseded ones."""
        client = self.client_for(repo)
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
            "pull request %s",
            "opened" if created else "updated" if updated else "unchanged",
            extra={"repo": repo, "url": pull.url, "superseded": superseded},
        )
        return PublishedProposal(
            url=pull.url, created=created, updated=updated, superseded=tuple(sorted(superseded))
        )

    def ensure_incident(self, repo: str, incident: Incident) -> str | None:
        """Open, or update, the one open incident issue for this runbook and target."""
        client = self.client_for(repo)
        marker = _INCIDENT_MARKER.format(runbook=incident.runbook, target=incident.target)
        body = f"{redact(incident.body).rstrip()}\n\n{marker}\n"
        title = redact(incident.title)
        found = self._find_issue(client, repo, INCIDENT_LABEL, marker)
        if found is None:
            url = self._create_issue(client, repo, title, body, INCIDENT_LABEL, marker)
            log.warning("incident opened", extra={"repo": repo, "url": url})
            return url
        url = _string(found.get("html_url"), source=self.host, what="html_url")
        if found.get("title") != title or found.get("body") != body:
            issue = client.create_from_raw_data(Issue, dict(found))
            self._call(
                f"updating incident {url}",
                lambda: issue.edit(title=title, body=body),
                idempotent=True,
            )
            log.info("incident updated", extra={"repo": repo, "url": url})
        return url

    def ensure_dashboard_issue(self, repo: str, body: str, *, run_id: str) -> str:
        """Open, or update in place, the one dashboard issue (label `rotation-bot-dashboard`,
        found by the hidden marker at the end of its body; a closed one is reopened).  The list
        is asked conditionally and an unchanged issue is not written: a quiet cycle costs one
        free request."""
        client = self.client_for(repo)
        text = f"{redact(body).rstrip()}\n\n{DASHBOARD_MARKER}\n"
        found = self._find_issue(client, repo, DASHBOARD_LABEL, DASHBOARD_MARKER, state="all")
        if found is None:
            url = self._create_issue(
                client, repo, DASHBOARD_TITLE, text, DASHBOARD_LABEL, DASHBOARD_MARKER
            )
            log.info("dashboard issue opened", extra={"repo": repo, "url": url})
            return url
        url = _string(found.get("html_url"), source=self.host, what="html_url")
        if (found.get("title"), found.get("body"), found.get("state")) != (
            DASHBOARD_TITLE,
            text,
            "open",
        ):
            issue = client.create_from_raw_data(Issue, dict(found))
            self._call(
                f"updating the dashboard issue {url}",
                lambda: issue.edit(title=DASHBOARD_TITLE, body=text, state="open"),
                idempotent=True,
            )
            log.info("dashboard issue updated", extra={"repo": repo, "url": url})
        return url

    # --- pull requests -------------------------------------------------------------------

    def _find_pull(self, repo: str, branch: str) -> _Pull | None:
        owner, name = _split(repo)
        client = self.client_for(repo)
        items = self._list(
            client,
            f"/repos/{quote(owner)}/{quote(name)}/pulls",
            {"state": "open", "head": f"{owner}:{branch}"},
        )
        pulls = [_parse_pull(item, source=f"{self.host} ({repo})") for item in items]
        return next((p for p in pulls if p.head == branch and _same(p.head_repo, repo)), None)

    def _open_pulls(self, repo: str) -> list[_Pull]:
        owner, name = _split(repo)
        items = self._list(
            self.client_for(repo), f"/repos/{quote(owner)}/{quote(name)}/pulls", {"state": "open"}
        )
        pulls = [_parse_pull(item, source=f"{self.host} ({repo})") for item in items]
        return [p for p in pulls if _same(p.head_repo, repo)]

    def _create_pull(self, client: Github, repo: str, proposal: Proposal) -> tuple[_Pull, bool]:
        """Create the pull request; after an uncertain failure, look again before retrying."""
        repository = client.get_repo(repo)
        body = _with_metadata(proposal)
        draft = proposal.draft
        for attempt in range(1, self.options.attempts + 1):
            try:
                created = self._post_pull(repository, proposal, body, draft=draft)
                return _parse_pull(created.raw_data, source=f"{self.host} ({repo})"), True
            except _AlreadyExists:
                found = self._find_pull(repo, proposal.branch)
                if found is None:
                    raise ServiceUnavailable(
                        f"{self.host} says a pull request for {proposal.branch} exists but does "
                        "not list it; try again later"
                    ) from None
                return found, False
            except _DraftUnsupported:
                log.warning(
                    "draft pull requests unsupported here; opening a regular one",
                    extra={"repo": repo},
                )
                draft = False
                continue
            except _Uncertain:
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
        return self._call(
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
        body = _with_metadata(proposal)
        title = redact(proposal.title)
        changed = (pull.title, pull.body, pull.base) != (title, body, proposal.base_branch)
        handle = client.create_from_raw_data(PullRequest, dict(pull.raw))
        if changed:
            self._call(
                f"updating {pull.url}",
                lambda: handle.edit(title=title, body=body, base=proposal.base_branch),
                idempotent=True,
            )
        missing = [label for label in proposal.labels if label not in pull.labels]
        if missing:
            self._call(
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
                self._call(f"setting {what} on {pull.url}", action, idempotent=True)
            except ConfigError as error:
                log.warning(
                    "could not set %s: %s",
                    what,
                    error.message,
                    extra={"repo": repo, "url": pull.url},
                )

    def _close_superseded(self, client: Github, repo: str, old: _Pull, new: _Pull) -> None:
        handle = client.create_from_raw_data(PullRequest, dict(old.raw))
        comment = f"Superseded by #{new.number} ({new.url}); closing. — rotation-bot"
        self._call(
            f"commenting on {old.url}",
            lambda: handle.create_issue_comment(comment),
            idempotent=False,
            uncertain_is_error=True,
        )
        self._call(f"closing {old.url}", lambda: handle.edit(state="closed"), idempotent=True)
        log.info("superseded pull request closed", extra={"repo": repo, "url": old.url})

    # --- incidents -----------------------------------------------------------------------

    def _find_issue(
        self, client: Github, repo: str, label: str, marker: str, *, state: str = "open"
    ) -> Mapping[str, Any] | None:
        """The issue (not pull request) labelled `label` whose body carries `marker` (open
        ones first when `state` is `all`)."""
        owner, name = _split(repo)
        items = self._list(
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
                issue = self._call(
                    f"opening a {label} issue in {repo}",
                    lambda: repository.create_issue(title=title, body=body, labels=[label]),
                    idempotent=False,
                )
                return _string(issue.raw_data.get("html_url"), source=self.host, what="html_url")
            except _Uncertain:
                found = self._find_issue(client, repo, label, marker)
                if found is not None:
                    return _string(found.get("html_url"), source=self.host, what="html_url")
                self.options.sleep(self.options.backoff * attempt)
        raise ServiceUnavailable(f"{self.host} kept failing to open the {label} issue in {repo}")

    # --- clients, lists and the one retry policy ----------------------------------------

    def client_for(self, repo: str) -> Github:
        """The PyGithub client for `repo` (with App auth, its installation's): counted, no retries.

        Other GitHub callers (the chat commands) use it to share credentials and the counter.
        """
        if self._token_client is not None:
            return self._token_client
        owner, _ = _split(repo)
        installation = self._installation_map().get(owner.lower())
        if installation is None:
            installation = self._installation_map(refresh=True).get(owner.lower())
        if installation is None:
            raise RepositoryError(
                f"the GitHub App is not installed on {owner}; install it on {repo} and retry"
            )
        return self._installation_client(installation)

    def _installation_map(self, *, refresh: bool = False) -> dict[str, int]:
        with self._lock:
            if self._installations and not refresh:
                return dict(self._installations)
        installations = self._call(
            "listing the App's installations",
            lambda: list(self._integration.get_installations()),
            idempotent=True,
        )
        found = {item.account.login.lower(): item.id for item in installations}
        with self._lock:
            self._installations = found
        return dict(found)

    def _installation_client(self, installation_id: int) -> Github:
        if self._app is None:
            raise ConfigError("GitHub App installations need ROTATION_BOT_GITHUB_APP_ID and _KEY")
        with self._lock:
            client = self._clients.get(installation_id)
            if client is None:
                client = self._client(self._app.get_installation_auth(installation_id))
                self._clients[installation_id] = client
            return client

    def _list(
        self, client: Github, path: str, params: Mapping[str, str], *, key: str | None = None
    ) -> tuple[Mapping[str, Any], ...]:
        """A whole list endpoint; the first page is asked conditionally (ETag)."""
        parameters = {**params, "per_page": "100"}
        cache_key = (path, tuple(sorted(parameters.items())))
        with self._lock:
            cached = self._listings.get(cache_key)
        headers = {"If-None-Match": cached.etag} if cached else {}
        response_headers, data = self._call(
            f"listing {path}",
            lambda: client.requester.requestJsonAndCheck(
                "GET", path, parameters=parameters, headers=headers
            ),
            idempotent=True,
        )
        if data is None and cached is not None:
            self._counter.add(not_modified=True)
            return cached.items
        items = list(_items(data, key, source=f"{self.host}{path}"))
        link = str(response_headers.get("link", ""))
        while 'rel="next"' in link:
            link, page = self._next_page(client, path, _next_link(link))
            items.extend(_items(page, key, source=f"{self.host}{path}"))
        etag = response_headers.get("etag")
        if etag and "link" not in response_headers:
            with self._lock:
                self._listings[cache_key] = _Listing(str(etag), tuple(items))
        return tuple(items)

    def _next_page(self, client: Github, path: str, url: str) -> tuple[str, Any]:
        headers, page = self._call(
            f"listing {path}",
            lambda: client.requester.requestJsonAndCheck("GET", url),
            idempotent=True,
        )
        return str(headers.get("link", "")), page

    def _call(
        self,
        what: str,
        action: Callable[[], T],
        *,
        idempotent: bool,
        uncertain_is_error: bool = False,
    ) -> T:
        """Run one PyGithub call: wait out secondary rate limits, retry reads, convert errors.

        A non-idempotent write that fails with a 5xx or a timeout raises `_Uncertain` (it may
        have happened) unless `uncertain_is_error`, in which case it is a `ServiceUnavailable`.
        """
        for attempt in range(1, self.options.attempts + 1):
            last = attempt == self.options.attempts
            try:
                return action()
            except GithubException as error:
                delay = _rate_limit_wait(error, self.options.secondary_wait)
                if delay is not None and not last:
                    if delay > self.options.max_retry_after:
                        raise self._convert(error, what) from error
                    log.warning(
                        "GitHub secondary rate limit; waiting %.0fs",
                        delay,
                        extra={"host": self.host, "action": what},
                    )
                    self.options.sleep(delay)
                    continue
                if error.status >= 500:
                    self._transient(
                        error,
                        self._convert(error, what),
                        what,
                        idempotent,
                        uncertain_is_error,
                        attempt,
                    )
                    continue
                if error.status == 422:
                    message = _message(error).lower()
                    if "a pull request already exists" in message:
                        raise _AlreadyExists(what) from error
                    if "draft" in message and "not supported" in message:
                        raise _DraftUnsupported(what) from error
                raise self._convert(error, what) from error
            except OSError as error:  # requests' ConnectionError and Timeout are OSErrors
                self._transient(
                    error,
                    self._unreachable(error, what),
                    what,
                    idempotent,
                    uncertain_is_error,
                    attempt,
                )
        raise ServiceUnavailable(f"{self.host} kept failing while {what}; try again later")

    def _transient(
        self,
        cause: Exception,
        failure: BotError,
        what: str,
        idempotent: bool,
        uncertain_is_error: bool,
        attempt: int,
    ) -> None:
        """After a 5xx or a dropped connection: a write may have happened (`_Uncertain`, or
        `failure` when the caller wants that); a read waits and is retried until the last try."""
        if not idempotent:
            if uncertain_is_error:
                raise failure from cause
            raise _Uncertain(what) from cause
        if attempt == self.options.attempts:
            raise failure from cause
        self.options.sleep(self.options.backoff * attempt)

    def _unreachable(self, error: OSError, what: str) -> BotError:
        return ServiceUnavailable(
            f"{self.host} did not answer while {what} ({type(error).__name__}); "
            "check ROTATION_BOT_GITHUB_URL and the network"
        )

    def _convert(self, error: GithubException, what: str) -> BotError:
        message = _message(error)
        where = f"{self.host} answered HTTP {error.status} while {what}: {message}"
        if error.status == 401:
            return ConfigError(f"{where}; check ROTATION_BOT_GITHUB_TOKEN or the App id and key")
        if error.status in (403, 429) and (
            _primary_exhausted(error) or _rate_limit_wait(error, 0.0) is not None
        ):
            return ServiceUnavailable(f"{where}; the rate limit resets later, try again then")
        if error.status == 404:
            return RepositoryError(
                f"{where}; check owner/name and that the token or App installation reaches it"
            )
        if error.status in (403, 422):
            return ConfigError(f"{where}; check the token's or App's permissions and the config")
        return ServiceUnavailable(f"{where}; try again later")


class _DraftUnsupported(Exception):
    """GitHub refused a draft pull request (plans without drafts on private repositories)."""


def _same(full_name: str, repo: str) -> bool:
    return full_name.lower() == repo.lower()


def _primary_exhausted(error: GithubException) -> bool:
    headers = {key.lower(): value for key, value in (error.headers or {}).items()}
    return str(headers.get("x-ratelimit-remaining", "")) == "0" and "retry-after" not in headers


def _items(data: object, key: str | None, *, source: str) -> Sequence[Mapping[str, Any]]:
    if key is not None and isinstance(data, Mapping):
        data = data.get(key)
    if not isinstance(data, list) or not all(isinstance(item, Mapping) for item in data):
        raise InvalidRemoteData(f"{source} answered with something that is not a list of objects")
    return data


def _next_link(link: str) -> str:
    for part in link.split(","):
        url, _, rel = part.partition(";")
        if 'rel="next"' in rel:
            return url.strip().strip("<>")
    raise InvalidRemoteData(f"unreadable Link header {link!r}")
