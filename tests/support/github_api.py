"""A stateful local server that answers like the GitHub REST API (and GitHub's git over HTTP).

GitHub is the one service without a local implementation, so the tests use this: a
`ThreadingHTTPServer` on 127.0.0.1 in a daemon thread, keeping state like GitHub does (issues
and pull requests share one number sequence; branches come from a real bare git repository;
labels, comments, reactions, reviewers in memory), answering in the shapes of GitHub's OpenAPI
description (`tests/fixtures/github-openapi-subset.json`; `tests/forges/test_github_api_schema.py`
validates every answer against it), recording every request, and able to inject faults.

Start, seed, point a client at it::

    from tests.support.github_api import Fault, make_git_repository, start_github_api

    running = start_github_api(tmp_path / "api")    # wrap in a fixture of your test file
    api = running.api
    try:
        remote = make_git_repository(tmp_path / "git", {"README.md": "hi\n"})  # bare + a clone
        api.add_token("ghp_test", login="rotation-bot")          # a valid token (any login)
        api.add_repository("octo/app", remote.bare)               # serve a bare git repo
        api.set_permission("octo/app", "alice", "write")  # admin|maintain|write|triage|read|none
        issue = api.add_issue("octo/app", title="x", user="alice")   # number shared with PRs
        comment = api.add_comment("octo/app", issue, user="alice", body="/rotate sharp")
        github = Github(auth=Auth.Token("ghp_test"), base_url=api.api_url)  # …/api/v3 (GHE shape)
    finally:
        running.stop()

`remote.commit({"file": "text"}, "message", branch="b")` pushes more commits to the bare
repository; `remote.branches()` reads its branches back.
- `api.api_url` is the REST base (`http://127.0.0.1:PORT/api/v3`, GitHub Enterprise's shape);
  `api.url` the host root.  A repository's `clone_url` is `http://127.0.0.1:PORT/OWNER/NAME.git`,
  served by `git http-backend` from the bare repository, requiring
  `Authorization: Basic base64(x-access-token:TOKEN)` with a valid token (as GitHub does);
  `add_repository(..., clone_url=path.as_uri())` makes the API point elsewhere instead.
- Auth: every API request needs `Authorization: token|Bearer TOKEN` with a token from
  `add_token` or one issued by `POST /app/installations/{id}/access_tokens`, else 401 "Bad
  credentials".  `/app/*` needs a GitHub App JWT (RS256) that verifies with the public key given
  to `add_app(app_id, public_key_pem)`; `add_installation(app_id, account, repositories)`.
  Installation tokens reach only their installation's repositories (others: 404) and expire
  after `api.token_lifetime` (one hour; shorten it to exercise refreshing).
- State to assert on: `api.repository("octo/app")` → `RepositoryState` with `.items` (issues
  and pulls by number: `.title .body .state .labels .assignees .reviewers .draft .head .is_pull`),
  `.comments` (id → `CommentState`), `.reactions` (list of `(comment_id, login, content)`);
  helpers `api.pulls("octo/app", state="open")`, `api.issues(...)`, `api.comments_on(...)`.
- Recorded requests: `api.requests` (a list of frozen `RecordedRequest`: method, path, query,
  headers, body, status), `api.requests_matching("POST", "/repos/octo/app/pulls")` (path without
  the `/api/v3` prefix; a trailing `*` matches a prefix), `api.clear_requests()`.
- Faults: `api.inject(Fault(...))`, consumed in order, each `times` times:
  `Fault.error_after("POST", "/repos/octo/app/pulls", status=502)` performs the operation, then
  answers 502; `Fault.timeout(method, path, seconds=2, perform=True)` performs it and answers
  only after `seconds` (set the client timeout lower); `Fault.secondary_rate_limit(method, path,
  retry_after=1)` answers 403 + `retry-after` without performing; `Fault.pull_request_exists(
  "octo/app", "branch")` answers GitHub's 422 "A pull request already exists"; `Fault.respond(
  method, path, status, body, headers, perform=False)` anything else (e.g. a stale empty list).
- Conditional requests: every 200 GET carries a weak `ETag`; a matching `If-None-Match` gets
  304 without a body, which (as on GitHub) does not count against `X-RateLimit-Remaining`.
  `GET /repos/…/commits/REF` with `Accept: application/vnd.github.sha` answers the commit id as
  plain text with the id, quoted, as its ETag (how GitHub says whether a ref moved).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import re
import secrets
import subprocess
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import jwt
import semver
from graphql import build_schema, parse, validate
from graphql.error import GraphQLError

API_PREFIX = "/api/v3"
DOCS = "https://docs.github.com/rest"
REACTIONS = ("+1", "-1", "laugh", "confused", "heart", "hooray", "rocket", "eyes")
PERMISSIONS = ("admin", "maintain", "write", "triage", "read")
RATE_LIMIT = 5000
SECONDARY_RATE_LIMIT_MESSAGE = (
    "You have exceeded a secondary rate limit. Please wait a few minutes before you try again. "
    "If you reach out to GitHub Support for help, please include the request ID 0000:TEST."
)
_GIT_PATH = re.compile(r"^/(?P<owner>[^/]+)/(?P<name>[^/]+?)\.git(?P<rest>/.*)$")


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# --- recorded requests and faults ---------------------------------------------------------


SHA_MEDIA_TYPE = "application/vnd.github.sha"


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the server saw it (path without the API prefix, query as a dict)."""

    method: str
    path: str
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: bytes
    status: int

    def json(self) -> Any:
        """The request body as JSON (None when empty)."""
        return json.loads(self.body) if self.body else None


@dataclass
class Fault:
    """A scripted misbehaviour for requests matching `method` and `path` (`*` suffix: prefix)."""

    method: str
    path: str
    status: int = 500
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)
    perform: bool = False
    delay: float = 0.0
    times: int = 1
    gate: threading.Event | None = None

    def matches(self, method: str, path: str) -> bool:
        """Whether this fault applies to a request."""
        if method != self.method or self.times <= 0:
            return False
        if self.path.endswith("*"):
            return path.startswith(self.path[:-1])
        return path == self.path

    @classmethod
    def error_after(cls, method: str, path: str, *, status: int = 502, times: int = 1) -> Fault:
        """Do the work, then answer a server error (the client cannot know it succeeded)."""
        return cls(
            method, path, status=status, body={"message": "Server Error"}, perform=True, times=times
        )

    @classmethod
    def timeout(
        cls, method: str, path: str, *, seconds: float = 2.0, perform: bool = True, times: int = 1
    ) -> Fault:
        """Do the work (if `perform`), then answer only after `seconds`."""
        return cls(method, path, status=0, perform=perform, delay=seconds, times=times)

    @classmethod
    def held(cls, method: str, path: str, gate: threading.Event) -> Fault:
        """Answer normally, but only once the test sets `gate` (a request the test controls)."""
        return cls(method, path, status=0, perform=True, gate=gate)

    @classmethod
    def secondary_rate_limit(
        cls, method: str, path: str, *, retry_after: int = 1, times: int = 1
    ) -> Fault:
        """403 with `retry-after`, as GitHub answers when a secondary rate limit is hit."""
        return cls(
            method,
            path,
            status=403,
            body={
                "message": SECONDARY_RATE_LIMIT_MESSAGE,
                "documentation_url": f"{DOCS}/overview/rate-limits-for-the-rest-api",
            },
            headers={"retry-after": str(retry_after)},
            times=times,
        )

    @classmethod
    def pull_request_exists(cls, repository: str, branch: str, *, times: int = 1) -> Fault:
        """GitHub's 422 when an open pull request already has this head."""
        owner = repository.split("/", maxsplit=1)[0]
        return cls(
            "POST",
            f"/repos/{repository}/pulls",
            status=422,
            body=_validation_failed(f"A pull request already exists for {owner}:{branch}."),
            times=times,
        )

    @classmethod
    def respond(
        cls,
        method: str,
        path: str,
        status: int,
        body: Any = None,
        *,
        headers: Mapping[str, str] | None = None,
        perform: bool = False,
        times: int = 1,
    ) -> Fault:
        """Any other canned answer (e.g. a stale empty list: `respond("GET", path, 200, [])`)."""
        return cls(
            method,
            path,
            status=status,
            body=body,
            headers=dict(headers or {}),
            perform=perform,
            times=times,
        )


def _validation_failed(message: str) -> dict[str, Any]:
    return {
        "message": "Validation Failed",
        "errors": [{"resource": "PullRequest", "code": "custom", "message": message}],
        "documentation_url": f"{DOCS}/pulls/pulls#create-a-pull-request",
        "status": "422",
    }


@dataclass(frozen=True)
class PlainText:
    """An answer in a non-JSON media type (`application/vnd.github.sha`: the commit id alone),
    sent as is, with the strong `ETag` GitHub gives it (the id, quoted)."""

    text: str
    media_type: str


class ApiError(Exception):
    """An error answer from a handler."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.body = {"message": message, "documentation_url": DOCS, "status": str(status), **extra}


# --- state ----------------------------------------------------------------------------------


@dataclass
class ItemState:
    """An issue or a pull request (GitHub numbers both from one sequence)."""

    number: int
    id: int
    title: str
    body: str | None
    user: str
    is_pull: bool
    state: str = "open"
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    reviewers: list[str] = field(default_factory=list)
    head: str = ""
    base: str = ""
    head_sha: str = ""
    base_sha: str = ""
    draft: bool = False
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    closed_at: str | None = None
    auto_merge: str | None = None  # the merge method of GitHub's auto-merge, once enabled


@dataclass
class CommentState:
    """An issue (or pull request) comment."""

    id: int
    issue: int
    user: str
    body: str
    created_at: str = field(default_factory=_now)


@dataclass
class RepositoryState:
    """One repository: its bare git repository and everything GitHub keeps beside it."""

    owner: str
    name: str
    id: int
    bare: Path
    default_branch: str
    clone_url: str
    private: bool = True
    items: dict[int, ItemState] = field(default_factory=dict)
    comments: dict[int, CommentState] = field(default_factory=dict)
    reactions: list[tuple[int, str, str]] = field(default_factory=list)
    permissions: dict[str, str] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    updated_at: str = field(default_factory=_now)
    allow_auto_merge: bool = False  # the repository setting "Allow auto-merge"
    required_checks: bool = False  # the base branch requires status checks (branch protection)

    @property
    def full_name(self) -> str:
        """`owner/name`."""
        return f"{self.owner}/{self.name}"

    def branch_sha(self, branch: str) -> str | None:
        """The commit a branch of the bare repository points at, or None."""
        completed = subprocess.run(
            [
                "git",
                "--git-dir",
                str(self.bare),
                "rev-parse",
                "--verify",
                "--quiet",
                f"refs/heads/{branch}^{{commit}}",
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout.strip() or None

    def git(self, *argv: str) -> str:
        """Run git on the bare repository; stdout ("" when git fails)."""
        completed = subprocess.run(
            ["git", "--git-dir", str(self.bare), *argv],
            capture_output=True,
            text=True,
            check=False,
        )
        return completed.stdout if completed.returncode == 0 else ""

    def commits_between(self, base: str, head: str) -> int:
        """How many commits `head` has that `base` lacks."""
        completed = subprocess.run(
            ["git", "--git-dir", str(self.bare), "rev-list", "--count", f"{base}..{head}"],
            capture_output=True,
            text=True,
            check=True,
        )
        return int(completed.stdout.strip())


@dataclass
class AdvisoryState:
    """A reviewed global security advisory for one npm package."""

    ghsa_id: str
    package: str
    vulnerable_range: str  # GitHub's format: ">= 0.33.0, < 0.33.5"
    first_patched_version: str | None
    summary: str

    def affects(self, version: str) -> bool:
        """Whether `version` is in the vulnerable range."""
        parsed = semver.Version.parse(version)
        return all(parsed.match(part.replace(" ", "")) for part in self.vulnerable_range.split(","))


@dataclass
class Installation:
    """A GitHub App installation on an account, reaching some repositories."""

    id: int
    app_id: str
    account: str
    repositories: tuple[str, ...]


@dataclass
class TokenState:
    """A token the server accepts: a personal token or an installation token."""

    login: str
    installation: int | None = None
    expires_at: datetime | None = None
    remaining: int = RATE_LIMIT


class GitHubApi:
    """The server's state and behaviour; `handle` answers one API request."""

    def __init__(self, root: Path, url: str) -> None:
        self.root = root
        self.url = url
        self.api_url = url + API_PREFIX
        self.lock = threading.RLock()
        self.repositories: dict[str, RepositoryState] = {}
        self.tokens: dict[str, TokenState] = {}
        self.apps: dict[str, bytes] = {}
        self.installations: dict[int, Installation] = {}
        self.faults: list[Fault] = []
        self.requests: list[RecordedRequest] = []
        self.token_lifetime = timedelta(hours=1)
        self.emails: dict[str, str] = {}
        self.advisories: list[AdvisoryState] = []
        self._ids = 1000

    # --- seeding -------------------------------------------------------------------------

    def next_id(self) -> int:
        """A fresh object id."""
        with self.lock:
            self._ids += 1
            return self._ids

    def add_token(self, token: str, *, login: str = "rotation-bot") -> None:
        """Accept `token` as a personal access token of `login`."""
        with self.lock:
            self.tokens[token] = TokenState(login=login)

    def add_repository(
        self,
        full_name: str,
        bare: Path,
        *,
        default_branch: str = "main",
        clone_url: str | None = None,
        private: bool = True,
    ) -> RepositoryState:
        """Serve an existing bare git repository as `owner/name`."""
        owner, name = full_name.split("/")
        served = self.root / "git" / owner / f"{name}.git"
        served.parent.mkdir(parents=True, exist_ok=True)
        if not served.exists():
            served.symlink_to(bare.resolve(), target_is_directory=True)
        state = RepositoryState(
            owner=owner,
            name=name,
            id=self.next_id(),
            bare=bare,
            default_branch=default_branch,
            clone_url=clone_url or f"{self.url}/{owner}/{name}.git",
            private=private,
            permissions={owner: "admin"},
        )
        with self.lock:
            self.repositories[full_name] = state
        return state

    def repository(self, full_name: str) -> RepositoryState:
        """A served repository's state."""
        return self.repositories[full_name]

    def set_permission(self, full_name: str, login: str, permission: str) -> None:
        """Make `login` a collaborator with `permission` (or `none` to remove)."""
        if permission not in (*PERMISSIONS, "none"):
            raise ValueError(f"permission must be one of {PERMISSIONS} or none")
        with self.lock:
            repo = self.repositories[full_name]
            if permission == "none":
                repo.permissions.pop(login, None)
            else:
                repo.permissions[login] = permission

    def add_app(self, app_id: str, public_key_pem: bytes) -> None:
        """Register a GitHub App whose JWTs verify with `public_key_pem` (RS256)."""
        self.apps[str(app_id)] = public_key_pem

    def add_installation(
        self, app_id: str, account: str, repositories: tuple[str, ...]
    ) -> Installation:
        """Install the App on `account`, reaching `repositories` (`owner/name`)."""
        installation = Installation(self.next_id(), str(app_id), account, tuple(repositories))
        self.installations[installation.id] = installation
        return installation

    def add_issue(
        self,
        full_name: str,
        *,
        title: str,
        user: str,
        body: str | None = None,
        labels: tuple[str, ...] = (),
    ) -> int:
        """Open an issue (as `user`); returns its number."""
        with self.lock:
            repo = self.repositories[full_name]
            item = ItemState(
                number=len(repo.items) + 1,
                id=self.next_id(),
                title=title,
                body=body,
                user=user,
                is_pull=False,
                labels=list(labels),
            )
            repo.items[item.number] = item
            return item.number

    def add_pull(self, full_name: str, *, head: str, base: str, user: str, title: str) -> int:
        """Open a person's pull request from branch `head` into `base`; returns its number."""
        with self.lock:
            repo = self.repositories[full_name]
            head_sha, base_sha = repo.branch_sha(head), repo.branch_sha(base)
            assert head_sha is not None and base_sha is not None, (head, base)
            item = ItemState(
                number=len(repo.items) + 1,
                id=self.next_id(),
                title=title,
                body=None,
                user=user,
                is_pull=True,
                head=head,
                base=base,
                head_sha=head_sha,
                base_sha=base_sha,
            )
            repo.items[item.number] = item
            return item.number

    def add_comment(
        self, full_name: str, issue: int, *, user: str, body: str, comment_id: int | None = None
    ) -> int:
        """Comment on an issue or pull request (as `user`); returns the comment id."""
        with self.lock:
            repo = self.repositories[full_name]
            if issue not in repo.items:
                raise KeyError(f"{full_name} has no issue #{issue}")
            comment = CommentState(comment_id or self.next_id(), issue, user, body)
            repo.comments[comment.id] = comment
            return comment.id

    def add_user_email(self, login: str, email: str) -> None:
        """Map commits authored with `email` to `login` (as GitHub does for verified emails)."""
        with self.lock:
            self.emails[email] = login

    def add_advisory(
        self,
        ghsa_id: str,
        package: str,
        vulnerable_range: str,
        first_patched_version: str | None,
        summary: str = "A vulnerability",
    ) -> None:
        """Publish a reviewed npm advisory in the global advisory database."""
        with self.lock:
            self.advisories.append(
                AdvisoryState(ghsa_id, package, vulnerable_range, first_patched_version, summary)
            )

    def allow_auto_merge(self, full_name: str, *, required_checks: bool = True) -> None:
        """Turn on "Allow auto-merge" (and, with `required_checks`, protect the default branch
        with a required status check, so auto-merge has something to wait for)."""
        with self.lock:
            repo = self.repositories[full_name]
            repo.allow_auto_merge = True
            repo.required_checks = required_checks

    def inject(self, fault: Fault) -> None:
        """Queue a fault (see the module docstring)."""
        with self.lock:
            self.faults.append(fault)

    # --- reading state -------------------------------------------------------------------

    def pulls(self, full_name: str, *, state: str = "all") -> list[ItemState]:
        """Pull requests of a repository, by number."""
        return [
            item
            for item in self.repositories[full_name].items.values()
            if item.is_pull and state in ("all", item.state)
        ]

    def issues(self, full_name: str, *, state: str = "all") -> list[ItemState]:
        """Issues (not pull requests) of a repository, by number."""
        return [
            item
            for item in self.repositories[full_name].items.values()
            if not item.is_pull and state in ("all", item.state)
        ]

    def comments_on(self, full_name: str, number: int) -> list[CommentState]:
        """Comments on one issue or pull request, oldest first."""
        return [c for c in self.repositories[full_name].comments.values() if c.issue == number]

    def requests_matching(self, method: str, path: str) -> list[RecordedRequest]:
        """Recorded requests with this method and path (`*` suffix: prefix)."""
        probe = Fault(method, path)
        return [r for r in list(self.requests) if probe.matches(r.method, r.path)]

    def clear_requests(self) -> None:
        """Forget the recorded requests."""
        with self.lock:
            self.requests.clear()

    def record(self, request: RecordedRequest) -> None:
        """Remember one request."""
        with self.lock:
            self.requests.append(request)

    def take_fault(self, method: str, path: str) -> Fault | None:
        """The first pending fault for this request, consumed once."""
        with self.lock:
            for fault in self.faults:
                if fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    # --- auth ----------------------------------------------------------------------------

    def token_for(self, headers: Mapping[str, str]) -> tuple[str, TokenState]:
        """The caller's valid token, or 401."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        token = self.tokens.get(value) if scheme.lower() in ("token", "bearer") else None
        if token is None or (
            token.expires_at is not None and token.expires_at <= datetime.now(UTC)
        ):
            raise ApiError(401, "Bad credentials")
        return value, token

    def app_for(self, headers: Mapping[str, str]) -> str:
        """The App whose JWT signs this request, or 401."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            raise ApiError(401, "A JSON web token could not be decoded")
        try:
            claims = jwt.decode(value, options={"verify_signature": False})
            key = self.apps[str(claims.get("iss"))]
            jwt.decode(value, key, algorithms=["RS256"], options={"require": ["exp", "iat", "iss"]})
        except (jwt.PyJWTError, KeyError) as error:
            raise ApiError(401, "A JSON web token could not be decoded") from error
        return str(claims["iss"])

    def visible(self, token: TokenState, full_name: str) -> RepositoryState:
        """The repository if this token reaches it, else 404 (as GitHub hides it)."""
        repo = self.repositories.get(full_name)
        if repo is None:
            raise ApiError(404, "Not Found")
        if token.installation is not None and full_name not in (
            self.installations[token.installation].repositories
        ):
            raise ApiError(404, "Not Found")
        return repo

    def git_authorized(self, headers: Mapping[str, str], full_name: str) -> bool:
        """Whether a git request carries Basic x-access-token:TOKEN reaching the repository."""
        scheme, _, value = headers.get("authorization", "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, _, password = base64.b64decode(value).decode().partition(":")
        except ValueError:
            return False
        token = self.tokens.get(password)
        if user != "x-access-token" or token is None:
            return False
        try:
            self.visible(token, full_name)
        except ApiError:
            return False
        return True

    # --- shapes (GitHub's OpenAPI description) -------------------------------------------

    def user(self, login: str) -> dict[str, Any]:
        """A `simple-user`."""
        base = f"{self.api_url}/users/{login}"
        kind = "Bot" if login.endswith("[bot]") else "User"
        return {
            "login": login,
            "id": int(hashlib.sha256(login.encode()).hexdigest()[:6], 16),
            "node_id": f"U_{login}",
            "avatar_url": f"{self.url}/avatars/{login}",
            "gravatar_id": "",
            "url": base,
            "html_url": f"{self.url}/{login}",
            "followers_url": f"{base}/followers",
            "following_url": f"{base}/following{{/other_user}}",
            "gists_url": f"{base}/gists{{/gist_id}}",
            "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
            "subscriptions_url": f"{base}/subscriptions",
            "organizations_url": f"{base}/orgs",
            "repos_url": f"{base}/repos",
            "events_url": f"{base}/events{{/privacy}}",
            "received_events_url": f"{base}/received_events",
            "type": kind,
            "site_admin": False,
        }

    def repository_shape(self, repo: RepositoryState, *, full: bool = False) -> dict[str, Any]:
        """A `repository` (or `full-repository`)."""
        base = f"{self.api_url}/repos/{repo.full_name}"
        templates = {
            "archive_url": "/{archive_format}{/ref}",
            "assignees_url": "/assignees{/user}",
            "blobs_url": "/git/blobs{/sha}",
            "branches_url": "/branches{/branch}",
            "collaborators_url": "/collaborators{/collaborator}",
            "comments_url": "/comments{/number}",
            "commits_url": "/commits{/sha}",
            "compare_url": "/compare/{base}...{head}",
            "contents_url": "/contents/{+path}",
            "contributors_url": "/contributors",
            "deployments_url": "/deployments",
            "downloads_url": "/downloads",
            "events_url": "/events",
            "forks_url": "/forks",
            "git_commits_url": "/git/commits{/sha}",
            "git_refs_url": "/git/refs{/sha}",
            "git_tags_url": "/git/tags{/sha}",
            "hooks_url": "/hooks",
            "issue_comment_url": "/issues/comments{/number}",
            "issue_events_url": "/issues/events{/number}",
            "issues_url": "/issues{/number}",
            "keys_url": "/keys{/key_id}",
            "labels_url": "/labels{/name}",
            "languages_url": "/languages",
            "merges_url": "/merges",
            "milestones_url": "/milestones{/number}",
            "notifications_url": "/notifications{?since,all,participating}",
            "pulls_url": "/pulls{/number}",
            "releases_url": "/releases{/id}",
            "stargazers_url": "/stargazers",
            "statuses_url": "/statuses/{sha}",
            "subscribers_url": "/subscribers",
            "subscription_url": "/subscription",
            "tags_url": "/tags",
            "teams_url": "/teams",
            "trees_url": "/git/trees{/sha}",
        }
        host = urlsplit(self.url).netloc
        open_count = sum(1 for item in repo.items.values() if item.state == "open")
        shape: dict[str, Any] = {
            "id": repo.id,
            "node_id": f"R_{repo.id}",
            "name": repo.name,
            "full_name": repo.full_name,
            "owner": self.user(repo.owner),
            "private": repo.private,
            "html_url": f"{self.url}/{repo.full_name}",
            "description": None,
            "fork": False,
            "url": base,
            **{key: base + suffix for key, suffix in templates.items()},
            "clone_url": repo.clone_url,
            "git_url": f"git://{host}/{repo.full_name}.git",
            "ssh_url": f"git@{host}:{repo.full_name}.git",
            "svn_url": f"{self.url}/{repo.full_name}",
            "mirror_url": None,
            "homepage": None,
            "language": "JavaScript",
            "forks": 0,
            "forks_count": 0,
            "stargazers_count": 0,
            "watchers": 0,
            "watchers_count": 0,
            "size": 1,
            "default_branch": repo.default_branch,
            "open_issues": open_count,
            "open_issues_count": open_count,
            "has_issues": True,
            "has_projects": False,
            "has_wiki": False,
            "has_pages": False,
            "has_downloads": False,
            "archived": False,
            "disabled": False,
            "license": None,
            "pushed_at": repo.updated_at,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": repo.updated_at,
        }
        if full:
            shape.update(has_discussions=False, network_count=0, subscribers_count=0)
        return shape

    def label_shape(self, repo: RepositoryState, name: str) -> dict[str, Any]:
        """A `label`."""
        with self.lock:
            label_id = repo.labels.setdefault(name, self.next_id())
        return {
            "id": label_id,
            "node_id": f"LA_{label_id}",
            "url": f"{self.api_url}/repos/{repo.full_name}/labels/{name}",
            "name": name,
            "description": None,
            "color": "ededed",
            "default": False,
        }

    def issue_shape(self, repo: RepositoryState, item: ItemState) -> dict[str, Any]:
        """An `issue` (pull requests appear in issue lists with a `pull_request` key)."""
        base = f"{self.api_url}/repos/{repo.full_name}/issues/{item.number}"
        shape: dict[str, Any] = {
            "id": item.id,
            "node_id": f"I_{item.id}",
            "url": base,
            "repository_url": f"{self.api_url}/repos/{repo.full_name}",
            "labels_url": f"{base}/labels{{/name}}",
            "comments_url": f"{base}/comments",
            "events_url": f"{base}/events",
            "html_url": f"{self.url}/{repo.full_name}/"
            f"{'pull' if item.is_pull else 'issues'}/{item.number}",
            "number": item.number,
            "state": item.state,
            "title": item.title,
            "body": item.body,
            "user": self.user(item.user),
            "labels": [self.label_shape(repo, name) for name in item.labels],
            "assignee": self.user(item.assignees[0]) if item.assignees else None,
            "assignees": [self.user(login) for login in item.assignees],
            "milestone": None,
            "locked": False,
            "comments": len([c for c in repo.comments.values() if c.issue == item.number]),
            "closed_at": item.closed_at,
            "created_at": item.created_at,
            "updated_at": item.updated_at,
        }
        if item.is_pull:
            pull = f"{self.api_url}/repos/{repo.full_name}/pulls/{item.number}"
            shape["pull_request"] = {
                "url": pull,
                "html_url": shape["html_url"],
                "diff_url": shape["html_url"] + ".diff",
                "patch_url": shape["html_url"] + ".patch",
                "merged_at": None,
            }
        return shape

    def pull_shape(self, repo: RepositoryState, item: ItemState) -> dict[str, Any]:
        """A `pull-request`; head and base SHAs are read from the bare repository."""
        head_sha = repo.branch_sha(item.head) or item.head_sha
        base_sha = repo.branch_sha(item.base) or item.base_sha
        base = f"{self.api_url}/repos/{repo.full_name}"
        url = f"{base}/pulls/{item.number}"
        html = f"{self.url}/{repo.full_name}/pull/{item.number}"
        issue = f"{base}/issues/{item.number}"

        def part(ref: str, sha: str) -> dict[str, Any]:
            return {
                "label": f"{repo.owner}:{ref}",
                "ref": ref,
                "sha": sha,
                "user": self.user(repo.owner),
                "repo": self.repository_shape(repo),
            }

        links = {
            "self": url,
            "html": html,
            "issue": issue,
            "comments": f"{issue}/comments",
            "review_comments": f"{url}/comments",
            "review_comment": f"{base}/pulls/comments{{/number}}",
            "commits": f"{url}/commits",
            "statuses": f"{base}/statuses/{head_sha}",
        }
        return {
            "url": url,
            "id": item.id,
            "node_id": f"PR_{item.id}",
            "html_url": html,
            "diff_url": f"{html}.diff",
            "patch_url": f"{html}.patch",
            "issue_url": issue,
            "commits_url": f"{url}/commits",
            "review_comments_url": f"{url}/comments",
            "review_comment_url": f"{base}/pulls/comments{{/number}}",
            "comments_url": f"{issue}/comments",
            "statuses_url": f"{base}/statuses/{head_sha}",
            "number": item.number,
            "state": item.state,
            "locked": False,
            "title": item.title,
            "user": self.user(item.user),
            "body": item.body,
            "labels": [self.label_shape(repo, name) for name in item.labels],
            "milestone": None,
            "active_lock_reason": None,
            "created_at": item.created_at,
            "updated_at": item.updated_at,
            "closed_at": item.closed_at,
            "merged_at": None,
            "merge_commit_sha": None,
            "assignee": self.user(item.assignees[0]) if item.assignees else None,
            "assignees": [self.user(login) for login in item.assignees],
            "requested_reviewers": [self.user(login) for login in item.reviewers],
            "requested_teams": [],
            "head": part(item.head, head_sha),
            "base": part(item.base, base_sha),
            "_links": {key: {"href": value} for key, value in links.items()},
            "author_association": "NONE",
            "auto_merge": None
            if item.auto_merge is None
            else {
                "enabled_by": self.user(item.user),
                "merge_method": item.auto_merge.lower(),
                "commit_title": item.title,
                "commit_message": "",
            },
            "draft": item.draft,
            "merged": False,
            "mergeable": None,
            "mergeable_state": "unknown",
            "merged_by": None,
            "maintainer_can_modify": False,
            "comments": len([c for c in repo.comments.values() if c.issue == item.number]),
            "review_comments": 0,
            "commits": 1,
            "additions": 0,
            "deletions": 0,
            "changed_files": 0,
        }

    def comment_shape(self, repo: RepositoryState, comment: CommentState) -> dict[str, Any]:
        """An `issue-comment`."""
        base = f"{self.api_url}/repos/{repo.full_name}"
        return {
            "id": comment.id,
            "node_id": f"IC_{comment.id}",
            "url": f"{base}/issues/comments/{comment.id}",
            "html_url": f"{self.url}/{repo.full_name}/issues/{comment.issue}"
            f"#issuecomment-{comment.id}",
            "issue_url": f"{base}/issues/{comment.issue}",
            "body": comment.body,
            "user": self.user(comment.user),
            "author_association": "CONTRIBUTOR",
            "created_at": comment.created_at,
            "updated_at": comment.created_at,
        }

    def installation_shape(self, installation: Installation) -> dict[str, Any]:
        """An `installation`."""
        account = self.user(installation.account)
        return {
            "id": installation.id,
            "app_id": int(installation.app_id),
            "app_slug": "rotation-bot",
            "target_id": account["id"],
            "target_type": "Organization",
            "account": account,
            "repository_selection": "selected",
            "access_tokens_url": f"{self.api_url}/app/installations/{installation.id}/"
            "access_tokens",
            "repositories_url": f"{self.api_url}/installation/repositories",
            "html_url": f"{self.url}/settings/installations/{installation.id}",
            "permissions": {
                "contents": "write",
                "pull_requests": "write",
                "issues": "write",
                "metadata": "read",
            },
            "events": ["issue_comment"],
            "single_file_name": None,
            "created_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "suspended_by": None,
            "suspended_at": None,
        }

    def rate_shape(self, token: TokenState | None) -> dict[str, Any]:
        """A `rate-limit`."""
        remaining = token.remaining if token else 60
        limit = RATE_LIMIT if token else 60
        return {
            "limit": limit,
            "remaining": remaining,
            "used": limit - remaining,
            "reset": int(time.time()) + 3600,
        }

    # --- routing -------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, re.Pattern[str], Callable[..., tuple[int, Any]]]]:
        """(method, path pattern, handler) for every operation served."""
        repo = r"/repos/(?P<owner>[^/]+)/(?P<name>[^/]+)"
        table: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/rate_limit", self.get_rate_limit),
            ("GET", r"/app/installations", self.list_installations),
            (
                "POST",
                r"/app/installations/(?P<installation>\d+)/access_tokens",
                self.create_access_token,
            ),
            ("GET", r"/installation/repositories", self.list_installation_repositories),
            ("GET", repo, self.get_repository),
            ("GET", repo + r"/pulls", self.list_pulls),
            ("POST", repo + r"/pulls", self.create_pull),
            ("GET", repo + r"/pulls/(?P<number>\d+)", self.get_pull),
            ("PATCH", repo + r"/pulls/(?P<number>\d+)", self.update_pull),
            ("POST", repo + r"/pulls/(?P<number>\d+)/requested_reviewers", self.request_reviewers),
            ("GET", repo + r"/issues", self.list_issues),
            ("POST", repo + r"/issues", self.create_issue),
            ("PATCH", repo + r"/issues/(?P<number>\d+)", self.update_issue),
            ("POST", repo + r"/issues/(?P<number>\d+)/labels", self.add_labels),
            ("POST", repo + r"/issues/(?P<number>\d+)/assignees", self.add_assignees),
            ("POST", repo + r"/issues/(?P<number>\d+)/comments", self.create_comment),
            ("POST", repo + r"/issues/comments/(?P<comment>\d+)/reactions", self.create_reaction),
            ("GET", repo + r"/collaborators/(?P<login>[^/]+)/permission", self.get_permission),
            ("GET", repo + r"/issues/(?P<number>\d+)/comments", self.list_comments),
            ("GET", repo + r"/commits/(?P<ref>[^/]+)", self.get_commit),
            ("GET", repo + r"/contents/(?P<path>.+)", self.get_content),
            ("GET", r"/advisories", self.list_advisories),
            ("POST", r"/api/graphql", self.graphql),
        ]
        return [(method, re.compile(f"^{pattern}$"), handler) for method, pattern, handler in table]

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: Any,
    ) -> tuple[int, Any, dict[str, str]]:
        """Answer one API request: (status, JSON body, extra headers)."""
        for route_method, pattern, handler in self.routes():
            match = pattern.match(path)
            if match and route_method == method:
                context = Request(self, query, headers, body, match.groupdict())
                status, answer = handler(context)
                return status, answer, context.response_headers
        raise ApiError(404, "Not Found")

    # --- operations ----------------------------------------------------------------------

    def get_rate_limit(self, request: Request) -> tuple[int, Any]:
        try:
            token: TokenState | None = request.token()
        except ApiError:
            token = None
        rate = self.rate_shape(token)
        return 200, {"resources": {"core": rate, "search": rate, "graphql": rate}, "rate": rate}

    def list_installations(self, request: Request) -> tuple[int, Any]:
        app_id = self.app_for(request.headers)
        found = [i for i in self.installations.values() if i.app_id == app_id]
        return 200, request.page([self.installation_shape(i) for i in found])

    def create_access_token(self, request: Request) -> tuple[int, Any]:
        app_id = self.app_for(request.headers)
        installation = self.installations.get(int(request.params["installation"]))
        if installation is None or installation.app_id != app_id:
            raise ApiError(404, "Not Found")
        token = "ghs_" + secrets.token_hex(18)
        expires = datetime.now(UTC) + self.token_lifetime
        with self.lock:
            self.tokens[token] = TokenState(
                login="rotation-bot[bot]", installation=installation.id, expires_at=expires
            )
        return 201, {
            "token": token,
            "expires_at": expires.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "permissions": {"contents": "write", "pull_requests": "write", "issues": "write"},
            "repository_selection": "selected",
        }

    def list_installation_repositories(self, request: Request) -> tuple[int, Any]:
        token = request.token()
        if token.installation is None:
            raise ApiError(403, "This endpoint requires an installation access token")
        names = self.installations[token.installation].repositories
        shapes = [
            self.repository_shape(self.repositories[n]) for n in names if n in self.repositories
        ]
        return 200, {
            "total_count": len(shapes),
            "repositories": request.page(shapes),
            "repository_selection": "selected",
        }

    def get_repository(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        shape = self.repository_shape(repo, full=True)
        level = repo.permissions.get(request.token().login, "write")
        shape["permissions"] = {
            name: PERMISSIONS.index(name) >= PERMISSIONS.index(level) for name in PERMISSIONS
        } | {"push": level in ("admin", "maintain", "write"), "pull": True}
        return 200, shape

    def list_pulls(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        state = request.query.get("state", "open")
        head = request.query.get("head")
        base = request.query.get("base")
        found = []
        for item in sorted(repo.items.values(), key=lambda i: i.number, reverse=True):
            if not item.is_pull or state not in ("all", item.state):
                continue
            if head and head != f"{repo.owner}:{item.head}":
                continue
            if base and base != item.base:
                continue
            found.append(item)
        return 200, request.page([self.pull_shape(repo, item) for item in found])

    def create_pull(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        token = request.token()
        body = request.json_object()
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not (
            isinstance(title, str) and title and isinstance(head, str) and isinstance(base, str)
        ):
            raise ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "PullRequest", "code": "missing_field", "field": "title"}],
            )
        branch = head.split(":", 1)[1] if ":" in head else head
        base_sha = repo.branch_sha(base)
        head_sha = repo.branch_sha(branch)
        for name, sha in (("base", base_sha), ("head", head_sha)):
            if sha is None:
                raise ApiError(
                    422,
                    "Validation Failed",
                    errors=[{"resource": "PullRequest", "field": name, "code": "invalid"}],
                )
        with self.lock:
            for item in repo.items.values():
                if (
                    item.is_pull
                    and item.state == "open"
                    and item.head == branch
                    and item.base == base
                ):
                    raise ApiError(**_exists(repo.owner, branch))
            assert base_sha is not None and head_sha is not None
            if repo.commits_between(base_sha, head_sha) == 0:
                raise ApiError(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"No commits between {base} and {branch}",
                        }
                    ],
                )
            item = ItemState(
                number=len(repo.items) + 1,
                id=self.next_id(),
                title=title,
                body=body.get("body"),
                user=token.login,
                is_pull=True,
                head=branch,
                base=base,
                head_sha=head_sha,
                base_sha=base_sha,
                draft=bool(body.get("draft", False)),
            )
            repo.items[item.number] = item
        request.response_headers["Location"] = (
            f"{self.api_url}/repos/{repo.full_name}/pulls/{item.number}"
        )
        return 201, self.pull_shape(repo, item)

    def get_pull(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        return 200, self.pull_shape(repo, request.item(repo, pull=True))

    def update_pull(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=True)
        body = request.json_object()
        with self.lock:
            if "base" in body:
                if repo.branch_sha(str(body["base"])) is None:
                    raise ApiError(
                        422,
                        "Validation Failed",
                        errors=[{"resource": "PullRequest", "field": "base", "code": "invalid"}],
                    )
                item.base = str(body["base"])
            _apply_common(item, body)
        return 200, self.pull_shape(repo, item)

    def request_reviewers(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=True)
        reviewers = request.json_object().get("reviewers", [])
        for login in reviewers:
            if login not in repo.permissions:
                raise ApiError(
                    422,
                    "Reviews may only be requested from collaborators. "
                    f"One or more of the users or teams you specified is not a "
                    f"collaborator of the {repo.full_name} repository.",
                )
            if login == item.user:
                raise ApiError(422, "Review cannot be requested from pull request author.")
        with self.lock:
            item.reviewers += [login for login in reviewers if login not in item.reviewers]
        shape = self.pull_shape(repo, item)
        return 201, shape

    def list_issues(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        state = request.query.get("state", "open")
        wanted = [name for name in request.query.get("labels", "").split(",") if name]
        found = [
            item
            for item in sorted(repo.items.values(), key=lambda i: i.number, reverse=True)
            if state in ("all", item.state) and all(name in item.labels for name in wanted)
        ]
        return 200, request.page([self.issue_shape(repo, item) for item in found])

    def create_issue(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        body = request.json_object()
        title = body.get("title")
        if not isinstance(title, str) or not title:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "Issue", "code": "missing_field", "field": "title"}],
            )
        with self.lock:
            item = ItemState(
                number=len(repo.items) + 1,
                id=self.next_id(),
                title=title,
                body=body.get("body"),
                user=request.token().login,
                is_pull=False,
                labels=[str(name) for name in body.get("labels", [])],
                assignees=[str(login) for login in body.get("assignees", [])],
            )
            repo.items[item.number] = item
        return 201, self.issue_shape(repo, item)

    def update_issue(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=False)
        body = request.json_object()
        with self.lock:
            _apply_common(item, body)
            if "labels" in body:
                item.labels = [str(name) for name in body["labels"]]
            if "assignees" in body:
                item.assignees = [str(login) for login in body["assignees"]]
        return 200, self.issue_shape(repo, item)

    def add_labels(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=False)
        body = request.json_value()
        names = body.get("labels", []) if isinstance(body, dict) else body
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ApiError(422, "Validation Failed")
        with self.lock:
            item.labels += [name for name in names if name not in item.labels]
            item.updated_at = _now()
        return 200, [self.label_shape(repo, name) for name in item.labels]

    def add_assignees(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=False)
        logins = request.json_object().get("assignees", [])
        with self.lock:
            item.assignees += [str(login) for login in logins if login not in item.assignees]
        return 201, self.issue_shape(repo, item)

    def create_comment(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=False)
        text = request.json_object().get("body")
        if not isinstance(text, str) or not text:
            raise ApiError(422, "Validation Failed")
        with self.lock:
            comment = CommentState(self.next_id(), item.number, request.token().login, text)
            repo.comments[comment.id] = comment
        return 201, self.comment_shape(repo, comment)

    def create_reaction(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        comment_id = int(request.params["comment"])
        if comment_id not in repo.comments:
            raise ApiError(404, "Not Found")
        content = request.json_object().get("content")
        if content not in REACTIONS:
            raise ApiError(
                422,
                "Validation Failed",
                errors=[{"resource": "Reaction", "code": "invalid", "field": "content"}],
            )
        login = request.token().login
        key = (comment_id, login, str(content))
        with self.lock:
            status = 200 if key in repo.reactions else 201
            if status == 201:
                repo.reactions.append(key)
            reaction_id = repo.reactions.index(key) + 1
        return status, {
            "id": reaction_id,
            "node_id": f"REA_{reaction_id}",
            "user": self.user(login),
            "content": content,
            "created_at": _now(),
        }

    def get_permission(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        login = request.params["login"]
        level = repo.permissions.get(login, "none")
        user = {**self.user(login), "role_name": level}
        return 200, {"permission": level, "role_name": level, "user": user}

    def list_comments(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        item = request.item(repo, pull=False)
        found = [self.comment_shape(repo, c) for c in self.comments_on(repo.full_name, item.number)]
        return 200, request.page(found)

    def get_commit(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        ref = unquote(request.params["ref"])  # a commit id or a branch name, as GitHub takes
        sha = ref if re.fullmatch(r"[0-9a-f]{40}", ref) else ""
        if not sha and not ref.startswith("-"):
            sha = repo.git(
                "rev-parse", "--verify", "--quiet", f"refs/heads/{ref}^{{commit}}"
            ).strip()
        line = sha and repo.git(
            "log", "-1", "--format=%P%x00%an%x00%ae%x00%cn%x00%ce%x00%s%x00%T", sha
        )
        if not line:
            raise ApiError(404, "No commit found for SHA: " + ref)
        parents, name, email, committer, committer_email, subject, tree = line.rstrip("\n").split(
            "\0"
        )
        if request.headers.get("accept", "").startswith(SHA_MEDIA_TYPE):
            # GitHub's way to ask whether a ref moved: the id alone, the id as its ETag (a
            # matching If-None-Match is a 304 that costs no rate limit)
            request.response_headers["ETag"] = f'"{sha}"'
            return 200, PlainText(sha, SHA_MEDIA_TYPE)
        base = f"{self.api_url}/repos/{repo.full_name}"
        login = self.emails.get(email)
        return 200, {
            "url": f"{base}/commits/{sha}",
            "sha": sha,
            "node_id": f"C_{sha[:12]}",
            "html_url": f"{self.url}/{repo.full_name}/commit/{sha}",
            "comments_url": f"{base}/commits/{sha}/comments",
            "commit": {
                "url": f"{base}/git/commits/{sha}",
                "author": {"name": name, "email": email, "date": _now()},
                "committer": {"name": committer, "email": committer_email, "date": _now()},
                "message": subject,
                "comment_count": 0,
                "tree": {"sha": tree, "url": f"{base}/git/trees/{tree}"},
            },
            "author": self.user(login) if login else None,
            "committer": self.user(self.emails[committer_email])
            if committer_email in self.emails
            else None,
            "parents": [
                {"sha": parent, "url": f"{base}/commits/{parent}"} for parent in parents.split()
            ],
        }

    def get_content(self, request: Request) -> tuple[int, Any]:
        repo = request.repository()
        path = request.params["path"]
        ref = request.query.get("ref") or repo.default_branch
        kind = repo.git("cat-file", "-t", f"{ref}:{path}").strip()
        if kind != "blob":
            raise ApiError(404, "Not Found")
        data = subprocess.run(
            ["git", "--git-dir", str(repo.bare), "cat-file", "blob", f"{ref}:{path}"],
            capture_output=True,
            check=True,
        ).stdout
        sha = repo.git("rev-parse", f"{ref}:{path}").strip()
        base = f"{self.api_url}/repos/{repo.full_name}"
        html = f"{self.url}/{repo.full_name}/blob/{ref}/{path}"
        return 200, {
            "type": "file",
            "encoding": "base64",
            "size": len(data),
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "content": base64.encodebytes(data).decode("ascii"),
            "sha": sha,
            "url": f"{base}/contents/{path}?ref={ref}",
            "git_url": f"{base}/git/blobs/{sha}",
            "html_url": html,
            "download_url": None,
            "_links": {
                "self": f"{base}/contents/{path}",
                "git": f"{base}/git/blobs/{sha}",
                "html": html,
            },
        }

    def list_advisories(self, request: Request) -> tuple[int, Any]:
        request.token()
        affects = request.query.get("affects", "")
        package, _, version = affects.rpartition("@") if "@" in affects[1:] else (affects, "", "")
        found = [
            advisory
            for advisory in self.advisories
            if request.query.get("ecosystem", "npm") == "npm"
            and (not package or advisory.package == package)
            and (not version or advisory.affects(version))
        ]
        return 200, request.page([self.advisory_shape(advisory) for advisory in found])

    def advisory_shape(self, advisory: AdvisoryState) -> dict[str, Any]:
        """A `global-advisory`."""
        return {
            "ghsa_id": advisory.ghsa_id,
            "cve_id": None,
            "url": f"{self.api_url}/advisories/{advisory.ghsa_id}",
            "html_url": f"{self.url}/advisories/{advisory.ghsa_id}",
            "repository_advisory_url": None,
            "summary": advisory.summary,
            "description": advisory.summary,
            "type": "reviewed",
            "severity": "high",
            "source_code_location": None,
            "identifiers": [{"type": "GHSA", "value": advisory.ghsa_id}],
            "references": [],
            "published_at": "2024-01-01T00:00:00Z",
            "updated_at": "2024-01-01T00:00:00Z",
            "github_reviewed_at": "2024-01-01T00:00:00Z",
            "nvd_published_at": None,
            "withdrawn_at": None,
            "vulnerabilities": [
                {
                    "package": {"ecosystem": "npm", "name": advisory.package},
                    "vulnerable_version_range": advisory.vulnerable_range,
                    "first_patched_version": advisory.first_patched_version,
                    "vulnerable_functions": [],
                }
            ],
            "cvss": None,
            "cwes": [],
            "credits": [],
        }

    def graphql(self, request: Request) -> tuple[int, Any]:
        """GitHub's GraphQL endpoint for the one mutation the bot sends, validated against
        GitHub's own schema (tests/fixtures/github-graphql-subset.graphql); answers like GitHub
        (200 with `errors` for a refused mutation)."""
        token = request.token()
        body = request.json_object()
        try:
            document = parse(str(body.get("query", "")))
        except GraphQLError as error:
            return 200, {"errors": [{"message": error.message}]}
        problems = validate(GRAPHQL_SCHEMA, document)
        if problems:
            return 200, {"errors": [{"message": problem.message} for problem in problems]}
        variables = body.get("variables") or {}
        node = str(variables.get("pullRequestId", ""))
        method = str(variables.get("mergeMethod", "MERGE"))
        for repo in self.repositories.values():
            for item in repo.items.values():
                if item.is_pull and f"PR_{item.id}" == node:
                    return self._enable_auto_merge(token, repo, item, method)
        return 200, {
            "data": {"enablePullRequestAutoMerge": None},
            "errors": [
                {
                    "type": "NOT_FOUND",
                    "message": f"Could not resolve to a node with the global id of '{node}'",
                }
            ],
        }

    def _enable_auto_merge(
        self, token: TokenState, repo: RepositoryState, item: ItemState, method: str
    ) -> tuple[int, Any]:
        if token.installation is not None and repo.full_name not in (
            self.installations[token.installation].repositories
        ):
            return 200, {"errors": [{"type": "FORBIDDEN", "message": "Resource not accessible"}]}
        problem = None
        if not repo.allow_auto_merge:
            problem = "Auto merge is not allowed for this repository"
        elif not repo.required_checks:
            problem = "Pull request is in clean status"
        elif item.state != "open":
            problem = "Pull request is closed"
        if problem is not None:
            return 200, {
                "data": {"enablePullRequestAutoMerge": None},
                "errors": [{"type": "UNPROCESSABLE", "message": problem}],
            }
        with self.lock:
            item.auto_merge = method
        return 200, {
            "data": {
                "enablePullRequestAutoMerge": {
                    "pullRequest": {
                        "number": item.number,
                        "autoMergeRequest": {"enabledAt": _now(), "mergeMethod": method},
                    }
                }
            }
        }


GRAPHQL_SCHEMA = build_schema(
    (
        Path(__file__).resolve().parent.parent / "fixtures" / "github-graphql-subset.graphql"
    ).read_text(encoding="utf-8")
)


def _exists(owner: str, branch: str) -> dict[str, Any]:
    body = _validation_failed(f"A pull request already exists for {owner}:{branch}.")
    return {"status": 422, "message": body["message"], "errors": body["errors"]}


def _apply_common(item: ItemState, body: Mapping[str, Any]) -> None:
    if "title" in body:
        item.title = str(body["title"])
    if "body" in body:
        item.body = body["body"]
    if body.get("state") in ("open", "closed") and body["state"] != item.state:
        item.state = str(body["state"])
        item.closed_at = _now() if item.state == "closed" else None
    item.updated_at = _now()


@dataclass
class Request:
    """What a handler sees of one request."""

    api: GitHubApi
    query: Mapping[str, str]
    headers: Mapping[str, str]
    body: Any
    params: Mapping[str, str]
    response_headers: dict[str, str] = field(default_factory=dict)

    def token(self) -> TokenState:
        """The caller's token (401 when missing or invalid)."""
        return self.api.token_for(self.headers)[1]

    def repository(self) -> RepositoryState:
        """The repository named in the path, if the caller's token reaches it."""
        return self.api.visible(self.token(), f"{self.params['owner']}/{self.params['name']}")

    def item(self, repo: RepositoryState, *, pull: bool) -> ItemState:
        """The issue or pull request named in the path (`pull`: must be a pull request)."""
        item = repo.items.get(int(self.params["number"]))
        if item is None or (pull and not item.is_pull):
            raise ApiError(404, "Not Found")
        return item

    def json_value(self) -> Any:
        """The parsed request body."""
        return self.body

    def json_object(self) -> dict[str, Any]:
        """The parsed request body, which must be an object."""
        if not isinstance(self.body, dict):
            raise ApiError(400, "Problems parsing JSON")
        return self.body

    def page(self, items: list[Any]) -> list[Any]:
        """One page of `items`, with GitHub's `Link` header for the others."""
        per_page = min(int(self.query.get("per_page", "30")), 100)
        number = max(int(self.query.get("page", "1")), 1)
        last = max((len(items) + per_page - 1) // per_page, 1)
        links = []
        path = self.headers.get(":path", "")
        for rel, target in (("next", number + 1), ("last", last)):
            if number < last:
                query = urlencode({**self.query, "page": str(target)})
                links.append(f'<{self.api.url}{path}?{query}>; rel="{rel}"')
        if links:
            self.response_headers["Link"] = ", ".join(links)
        return items[(number - 1) * per_page : number * per_page]


# --- HTTP -------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the tests read `api.requests` instead."""

    def do_GET(self) -> None:
        self.dispatch()

    def do_POST(self) -> None:
        self.dispatch()

    def do_PATCH(self) -> None:
        self.dispatch()

    def do_PUT(self) -> None:
        self.dispatch()

    def do_DELETE(self) -> None:
        self.dispatch()

    def read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def dispatch(self) -> None:
        api = self.server.api
        split = urlsplit(self.path)
        body = self.read_body()
        headers = {key.lower(): value for key, value in self.headers.items()}
        git = _GIT_PATH.match(split.path)
        if git and not split.path.startswith(API_PREFIX):
            self.serve_git(git, split.query, headers, body)
            return
        path = split.path.removeprefix(API_PREFIX).rstrip("/") or "/"
        query = dict(parse_qsl(split.query))
        fault = api.take_fault(self.command, path)
        status, answer, extra = 0, None, {}
        if fault is None or fault.perform:
            status, answer, extra = self.answer(path, query, headers, body, split.path)
        if fault is not None:
            if fault.status:
                status, answer, extra = fault.status, fault.body, dict(fault.headers)
            if status == 0 and fault.gate is None:  # a timeout answers 504 after the delay
                status, answer, extra = 504, {"message": "timeout"}, {}
        recorded = RecordedRequest(self.command, path, query, headers, body, status)
        api.record(recorded)
        if fault is not None and fault.delay:
            time.sleep(fault.delay)
        if fault is not None and fault.gate is not None:
            fault.gate.wait(30)
        self.send_json(status, answer, extra, headers, recorded)

    def answer(
        self, path: str, query: dict[str, str], headers: dict[str, str], body: bytes, raw: str
    ) -> tuple[int, Any, dict[str, str]]:
        api = self.server.api
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            return 400, {"message": "Problems parsing JSON", "documentation_url": DOCS}, {}
        try:
            return api.handle(self.command, path, query, {**headers, ":path": raw}, parsed)
        except ApiError as error:
            return error.status, error.body, {}

    def send_json(
        self,
        status: int,
        answer: Any,
        extra: Mapping[str, str],
        headers: Mapping[str, str],
        recorded: RecordedRequest,
    ) -> None:
        api = self.server.api
        if isinstance(answer, PlainText):
            payload = answer.text.encode()
            response_headers = {"Content-Type": f"{answer.media_type}; charset=utf-8", **extra}
        else:
            payload = b"" if answer is None else json.dumps(answer).encode()
            response_headers = {"Content-Type": "application/json; charset=utf-8", **extra}
        token = api.tokens.get(headers.get("authorization", "").partition(" ")[2])
        not_modified = False
        if self.command == "GET" and status == 200:
            etag = response_headers.setdefault(
                "ETag", 'W/"' + hashlib.sha256(payload).hexdigest()[:40] + '"'
            )
            if headers.get("if-none-match") == etag:
                not_modified = True
        if token is not None:
            counted = not not_modified and recorded.path != "/rate_limit" and status != 401
            with api.lock:
                if counted:
                    token.remaining = max(token.remaining - 1, 0)
            rate = api.rate_shape(token)
            response_headers.update(
                {
                    "X-RateLimit-Limit": str(rate["limit"]),
                    "X-RateLimit-Remaining": str(rate["remaining"]),
                    "X-RateLimit-Used": str(rate["used"]),
                    "X-RateLimit-Reset": str(rate["reset"]),
                    "X-RateLimit-Resource": "core",
                }
            )
        if not_modified:
            status, payload = 304, b""
            with api.lock:  # this request's record (other requests may have come since)
                for index in range(len(api.requests) - 1, -1, -1):
                    if api.requests[index] is recorded:
                        api.requests[index] = dataclasses.replace(recorded, status=304)
                        break
        try:
            self.send_response(status)
            for key, value in response_headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if payload:
                self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def serve_git(
        self, match: re.Match[str], query: str, headers: dict[str, str], body: bytes
    ) -> None:
        """Smart HTTP through `git http-backend`, behind GitHub's token check."""
        api = self.server.api
        full_name = f"{match['owner']}/{match['name']}"
        path = f"/{full_name}.git{match['rest']}"
        if not api.git_authorized(headers, full_name):
            api.record(
                RecordedRequest(self.command, path, dict(parse_qsl(query)), headers, body, 401)
            )
            self.send_response(401)
            self.send_header("WWW-Authenticate", 'Basic realm="GitHub"')
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        environment = {
            "PATH": "/usr/bin:/bin",
            "GIT_PROJECT_ROOT": str(api.root / "git"),
            "GIT_HTTP_EXPORT_ALL": "1",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "REQUEST_METHOD": self.command,
            "CONTENT_TYPE": headers.get("content-type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
            "GIT_PROTOCOL": headers.get("git-protocol", ""),
            "HTTP_CONTENT_ENCODING": headers.get("content-encoding", ""),
        }
        completed = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=environment,
            capture_output=True,
            check=False,
        )
        head, _, payload = completed.stdout.partition(b"\r\n\r\n")
        status = 200
        response_headers = []
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split()[0])
            elif key:
                response_headers.append((key, value.strip()))
        api.record(
            RecordedRequest(self.command, path, dict(parse_qsl(query)), headers, body, status)
        )
        self.send_response(status, HTTPStatus(status).phrase)
        for key, value in response_headers:
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, api_root: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        host, port = self.server_address[:2]
        self.api = GitHubApi(api_root, f"http://{host!s}:{port}")


@dataclass
class RunningApi:
    """A started server: the `GitHubApi` state plus the means to stop it."""

    api: GitHubApi
    server: _Server
    thread: threading.Thread

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start_github_api(directory: Path) -> RunningApi:
    """Serve a fresh GitHub-shaped API on 127.0.0.1 (state under `directory`)."""
    directory.mkdir(parents=True, exist_ok=True)
    server = _Server(directory)
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="github-api", daemon=True
    )
    thread.start()
    return RunningApi(server.api, server, thread)


@dataclass(frozen=True)
class GitRepository:
    """A bare repository with a working clone to prepare commits in."""

    bare: Path
    work: Path

    def git(self, *argv: str, cwd: Path | None = None) -> str:
        """Run git in the working clone (or `cwd`); returns stdout."""
        return subprocess.run(
            ["git", *argv],
            cwd=cwd or self.work,
            capture_output=True,
            text=True,
            check=True,
            env={
                "PATH": "/usr/bin:/bin",
                "HOME": str(self.work),
                "GIT_CONFIG_NOSYSTEM": "1",
                "GIT_AUTHOR_NAME": "Test",
                "GIT_AUTHOR_EMAIL": "test@example.com",
                "GIT_COMMITTER_NAME": "Test",
                "GIT_COMMITTER_EMAIL": "test@example.com",
            },
        ).stdout

    def commit(
        self, files: Mapping[str, str | bytes], message: str, *, branch: str = "main"
    ) -> str:
        """Commit `files` (text, or bytes as they are) on `branch` (created from main if new)
        and push; returns the sha."""
        if self.has_remote(branch):
            self.git("checkout", "-q", "-B", branch, f"origin/{branch}")
        elif self.has_remote("main"):
            self.git("checkout", "-q", "-B", branch, "origin/main")
        for name, text in files.items():
            path = self.work / name
            path.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(text, bytes):
                path.write_bytes(text)
            else:
                path.write_text(text)
        self.git("add", "--", *files)
        self.git("commit", "-q", "-m", message)
        self.git("push", "-q", "--force", "origin", f"HEAD:refs/heads/{branch}")
        return self.git("rev-parse", "HEAD").strip()

    def has_remote(self, branch: str) -> bool:
        """Whether the bare repository has `branch`."""
        self.git("fetch", "-q", "origin")
        return bool(self.git("branch", "-r", "--list", f"origin/{branch}").strip())

    def branches(self) -> dict[str, str]:
        """Branch name → commit in the bare repository."""
        listing = self.git(
            "for-each-ref", "--format=%(refname:short) %(objectname)", "refs/heads", cwd=self.bare
        )
        return dict(line.split() for line in listing.splitlines())


def make_git_repository(directory: Path, files: Mapping[str, str]) -> GitRepository:
    """A bare repository (default branch `main`) with one commit of `files`."""
    bare = directory / "remote.git"
    work = directory / "seed"
    subprocess.run(["git", "init", "-q", "--bare", "-b", "main", str(bare)], check=True)
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True, capture_output=True)
    subprocess.run(["git", "-C", str(work), "symbolic-ref", "HEAD", "refs/heads/main"], check=True)
    repository = GitRepository(bare, work)
    repository.commit(files, "Initial commit")
    return repository
