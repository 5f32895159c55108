"""The GitHub API client every GitHub concern shares: credentials, retries, caching, counting.

Credentials are a token or a GitHub App (app id + private key → an installation token per
account, refreshed by PyGithub before it expires).  Both are registered for redaction, PyGithub's
own debug log is redacted, and a token leaves this module only as an HTTP header: in API
requests, and in `push_auth`, which hands git an `Authorization: basic …` header through the
environment of one command (never a URL or a git config).

PyGithub's own retries are off (they would repeat a POST after a 5xx): `call` retries reads, and
honours secondary rate limits (403/429 with `retry-after`) for every request, since GitHub did
not process those.  A write that fails in a way that may have succeeded (a 5xx, a timeout)
raises `Uncertain`, so that its caller looks before it retries.

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
from github.Requester import Requester

from bot.errors import (
    BotError,
    ConfigError,
    InvalidRemoteData,
    RepositoryError,
    ServiceUnavailable,
    redact,
    register_secret,
)
from bot.forges.base import ApiUsage
from bot.limits import decode_file
from bot.sources.http import USER_AGENT, host_of
from bot.workspace import PushAuth

log = logging.getLogger(__name__)

_NAME_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

T = TypeVar("T")


# --- counting and auth ---------------------------------------------------------------------


# Spend one request of the named budget (`token`, `app`, `installation/ID`), waiting for it if
# need be; the fleet shares one budget per installation (bot/service/distributed/shared.py).
RequestBudget = Callable[[str], None]


class _Counter:
    """A thread-safe request counter shared by every client of one forge (and the budget each
    request is spent from, if any)."""

    def __init__(self, budget: RequestBudget | None = None) -> None:
        self._lock = threading.Lock()
        self.budget = budget
        self.requests = 0
        self.not_modified = 0

    def add(self, *, not_modified: bool = False, budget: str | None = None) -> None:
        if budget is not None and self.budget is not None:
            self.budget(budget)
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
        self._counter.add(budget="token")
        super().authentication(headers)


class _CountingAppAuth(Auth.AppAuth):
    """App (JWT) auth that counts its requests and hands out counting installation auths."""

    def __init__(self, app_id: str, private_key: str, counter: _Counter) -> None:
        super().__init__(app_id, private_key)
        self._counter = counter

    def authentication(self, headers: dict[str, str]) -> None:
        self._counter.add(budget="app")
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
        self._counter.add(budget=f"installation/{self.installation_id}")
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


# --- options and answers --------------------------------------------------------------------


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
class _Listing:
    """A cached list answer and its ETag."""

    etag: str
    items: tuple[Mapping[str, Any], ...]


class Uncertain(Exception):
    """A write failed in a way that may have succeeded (5xx, timeout): look before retrying."""


class AlreadyExists(Exception):
    """GitHub's 422 "A pull request already exists"."""


class DraftUnsupported(Exception):
    """GitHub refused a draft pull request (plans without drafts on private repositories)."""


def string_field(value: object, *, source: str, what: str) -> str:
    if not isinstance(value, str):
        raise InvalidRemoteData(f"{source} answered without a valid {what}")
    return value


def split_name(repo: str) -> tuple[str, str]:
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


# --- the client ---------------------------------------------------------------------------


class GitHubClient:
    """Authenticated, counted, retrying access to one GitHub (or GitHub Enterprise) host."""

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
        if not base_url.startswith(("https://", "http://")):
            raise ConfigError(f"ROTATION_BOT_GITHUB_URL {base_url!r} must be an http(s) URL")
        self.base_url = base_url.rstrip("/")
        self.host = host_of(self.base_url)
        self.options = options or GitHubOptions()
        self._counter = _Counter(budget)
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

    # --- repositories ----------------------------------------------------------------------

    def api_usage(self) -> ApiUsage:
        """Requests made so far by this forge (subtract two snapshots for one run)."""
        return self._counter.snapshot()

    def clone_url(self, repository: str) -> str:
        """The repository's git URL, from the API (asked once per process)."""
        owner, name = split_name(repository)
        with self._lock:
            cached = self._clone_urls.get(repository)
        if cached:
            return cached
        client = self.client_for(repository)
        path = f"/repos/{quote(owner)}/{quote(name)}"
        _, data = self.call(
            f"reading {repository}",
            lambda: client.requester.requestJsonAndCheck("GET", path),
            idempotent=True,
        )
        source = f"{self.host} ({repository})"
        if not isinstance(data, Mapping):
            raise InvalidRemoteData(f"{source} answered with a repository that is not an object")
        url = string_field(data.get("clone_url"), source=source, what="clone_url")
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
        token = self.call("issuing a token", lambda: auth.token, idempotent=True)
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
            for item in self.list_all(client, "/installation/repositories", {}, key="repositories"):
                names.add(string_field(item.get("full_name"), source=self.host, what="full_name"))
        return tuple(sorted(names))

    def read_file(self, repo: str, path: str, ref: str) -> str | None:
        """A file's text at commit `ref`, from the contents API (None when it is not there)."""
        owner, name = split_name(repo)
        try:
            data = self.get(
                repo,
                f"/repos/{quote(owner)}/{quote(name)}/contents/{quote(path)}",
                f"reading {path} at {ref[:12]}",
                ref=ref,
            )
        except RepositoryError:
            return None
        source = f"{self.host} ({repo} {path})"
        if not isinstance(data, Mapping) or data.get("type") != "file":
            return None
        if data.get("encoding") != "base64":
            raise InvalidRemoteData(f"{source}: content is not base64")
        try:
            raw = base64.b64decode(string_field(data.get("content"), source=source, what="content"))
        except ValueError as error:
            raise InvalidRemoteData(f"{source}: content is not base64") from error
        return decode_file(path, raw)

    # --- clients, lists and the one retry policy ----------------------------------------

    def client_for(self, repo: str) -> Github:
        """The PyGithub client for `repo` (with App auth, its installation's): counted, no
        retries of its own."""
        if self._token_client is not None:
            return self._token_client
        owner, _ = split_name(repo)
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
        installations = self.call(
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

    def list_all(
        self, client: Github, path: str, params: Mapping[str, str], *, key: str | None = None
    ) -> tuple[Mapping[str, Any], ...]:
        """A whole list endpoint; the first page is asked conditionally (ETag)."""
        parameters = {**params, "per_page": "100"}
        cache_key = (path, tuple(sorted(parameters.items())))
        with self._lock:
            cached = self._listings.get(cache_key)
        headers = {"If-None-Match": cached.etag} if cached else {}
        response_headers, data = self.call(
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

    def get(self, repo: str, path: str, what: str, **parameters: str) -> Any:
        """One GET of `path` (relative to the API root) with `repo`'s client; the JSON answer."""
        client = self.client_for(repo)
        _, data = self.call(
            what,
            lambda: client.requester.requestJsonAndCheck("GET", path, parameters=parameters),
            idempotent=True,
        )
        return data

    def get_text(
        self, repo: str, path: str, what: str, *, media_type: str, etag: str | None = None
    ) -> str | None:
        """One GET of `path` in a plain-text `media_type` (the body as is, never parsed as
        JSON); with `etag`, asked conditionally: None when GitHub answers 304 (unchanged)."""
        client = self.client_for(repo)
        headers = {"Accept": media_type}
        if etag is not None:
            headers["If-None-Match"] = etag

        def request() -> tuple[int, str]:
            requester = client.requester
            status, response_headers, output = requester.requestJson("GET", path, headers=headers)
            if status >= 400:
                raise requester.createException(status, response_headers, _json_or_text(output))
            return status, output

        status, text = self.call(what, request, idempotent=True)
        if status == 304:
            self._counter.add(not_modified=True)
            return None
        return text

    def _next_page(self, client: Github, path: str, url: str) -> tuple[str, Any]:
        headers, page = self.call(
            f"listing {path}",
            lambda: client.requester.requestJsonAndCheck("GET", url),
            idempotent=True,
        )
        return str(headers.get("link", "")), page

    def call(
        self,
        what: str,
        action: Callable[[], T],
        *,
        idempotent: bool,
        uncertain_is_error: bool = False,
    ) -> T:
        """Run one PyGithub call: wait out secondary rate limits, retry reads, convert errors.

        A non-idempotent write that fails with a 5xx or a timeout raises `Uncertain` (it may
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
                        "GitHub secondary rate limit; waiting",
                        extra={"host": self.host, "action": what, "seconds": round(delay)},
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
                        raise AlreadyExists(what) from error
                    if "draft" in message and "not supported" in message:
                        raise DraftUnsupported(what) from error
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
        """After a 5xx or a dropped connection: a write may have happened (`Uncertain`, or
        `failure` when the caller wants that); a read waits and is retried until the last try."""
        if not idempotent:
            if uncertain_is_error:
                raise failure from cause
            raise Uncertain(what) from cause
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
        if error.status in (400, 403, 422):
            return ConfigError(f"{where}; check the token's or App's permissions and the config")
        return ServiceUnavailable(f"{where}; try again later")


def _json_or_text(output: str) -> Any:
    """An error body as PyGithub's exceptions take it: its JSON, else the text."""
    try:
        return json.loads(output)
    except ValueError:
        return {"message": output[:200]}


def same_repository(full_name: str, repo: str) -> bool:
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
