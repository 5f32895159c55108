"""The `/rotate` chat command: parse a comment, check who asked, queue the work, answer.

Commands (first line of an issue or pull-request comment):

    /rotate sharp            /rotate base-image       /rotate all
    /rotate sharp 0.34.5     (an exact target; strict semver)
    /rotate status

Only users whose repository permission (read through the API, never the payload's
`author_association`) is write, maintain or admin may use them; anyone else gets a polite reply
and nothing runs.  A command is acknowledged with 👀, then answered with 👍 and the pull request
link, or 👎 and the failure summary with the audit run id.  Comments by bots, and comments whose
first line is not a command, are ignored, so the bot's own replies never trigger anything.

The first line is read the way GitHub's Markdown reads it (CommonMark): lines end at CR, LF or
CRLF only; a blank line holds nothing but spaces and tabs; a command may be indented by up to
three spaces, because four columns (a tab counts as four) make an indented code block.  A quote
(`> /rotate sharp`) or a fence (its first line is the fence) is therefore never a command, nor is
a command inside either.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import requests
from github import Github, GithubException, UnknownObjectException
from github.Repository import Repository

from bot.audit import AuditStore
from bot.errors import BotError, InvalidRemoteData, ServiceUnavailable, redact
from bot.models import RunRequest, RunSummary, Trigger, strict_version
from bot.runbook import Runbook
from bot.service.locks import repository_key
from bot.service.metrics import Metrics
from bot.service.workqueue import Admission, WorkQueue, WorkResult

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^ {0,3}/rotate(?:[ \t]+(?P<arguments>.*))?$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # CommonMark's, not str.splitlines()'s eight
_REPOSITORY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
TRIGGERING_PERMISSIONS = frozenset({"admin", "maintain", "write"})
SUCCESS_OUTCOMES = frozenset({"proposed", "up-to-date", "nothing-to-do"})
Reaction = Literal["eyes", "+1", "-1"]
ClientFor = Callable[[str], Github]


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A parsed `/rotate` comment: rotate (runbooks None = all), status, or not understood."""

    action: Literal["rotate", "status", "unknown"]
    runbooks: tuple[str, ...] | None = None
    target: str | None = None
    problem: str | None = None


def parse_command(text: str, runbooks: Mapping[str, Runbook]) -> Command | None:
    """The command in a comment's first non-blank line; None when it is not a `/rotate` one
    (nor when Markdown renders that line as code or a quote)."""
    first = next((line for line in _LINE_BREAK.split(text) if line.strip(" \t")), "")
    match = _COMMAND.match(first)
    if match is None:
        return None
    words = (match.group("arguments") or "").split()
    if not words:
        return Command("unknown", problem="say what to rotate")
    name = words[0].lower()
    if name == "status" and len(words) == 1:
        return Command("status")
    if name == "all" and len(words) == 1:
        return Command("rotate", runbooks=None)
    if name not in runbooks:
        return Command("unknown", problem=f"there is no runbook named `{_quote(words[0])}`")
    if len(words) == 1:
        return Command("rotate", runbooks=(name,))
    if len(words) > 2:
        return Command("unknown", problem="too many words")
    if runbooks[name].watch.npm is None:
        return Command("unknown", problem=f"`{name}` takes no target version")
    try:
        target = strict_version(words[1], source="the command")
    except InvalidRemoteData:
        return Command(
            "unknown", problem=f"`{_quote(words[1])}` is not an exact version like 0.34.5"
        )
    return Command("rotate", runbooks=(name,), target=target)


def _quote(word: str) -> str:
    """A user's word, safe inside inline code and short."""
    return re.sub(r"[^A-Za-z0-9._@/+-]", "", word)[:40]


# --- the comment event -------------------------------------------------------------------------


@dataclass(frozen=True)
class CommentEvent:
    """The fields of an `issue_comment` webhook the command needs, validated."""

    repo: str
    issue_number: int
    comment_id: int
    comment_url: str
    author: str
    body: str


def comment_event(payload: Any) -> CommentEvent | None:
    """A created comment by a person, from an `issue_comment` payload; None when it is anything
    else (edited, deleted, by a bot) or malformed."""
    try:
        if payload["action"] != "created":
            return None
        comment, issue = payload["comment"], payload["issue"]
        user = comment["user"]
        if user.get("type") == "Bot":
            return None
        event = CommentEvent(
            repo=payload["repository"]["full_name"],
            issue_number=issue["number"],
            comment_id=comment["id"],
            comment_url=comment["html_url"],
            author=user["login"],
            body=comment["body"],
        )
    except (KeyError, TypeError, AttributeError):
        return None
    valid = (
        isinstance(event.repo, str)
        and bool(_REPOSITORY.match(event.repo))
        and _positive(event.issue_number)
        and _positive(event.comment_id)
        and isinstance(event.comment_url, str)
        and event.comment_url.startswith(("https://", "http://"))
        and isinstance(event.author, str)
        and bool(_LOGIN.match(event.author))
        and not event.author.endswith("[bot]")
        and isinstance(event.body, str)
    )
    return event if valid else None


def _positive(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --- replies (pure) ----------------------------------------------------------------------------


def help_reply(runbooks: Mapping[str, Runbook], problem: str | None) -> str:
    """The list of valid commands, after what was wrong with the comment."""
    lines = [
        f"I did not understand that: {problem}." if problem else "I did not understand that.",
        "",
        "Commands I know:",
    ]
    for name, runbook in sorted(runbooks.items()):
        lines.append(f"- `/rotate {name}`: {runbook.title}")
        if runbook.watch.npm is not None:
            lines.append(f"- `/rotate {name} 1.2.3`: the same, to exactly that version")
    lines += [
        "- `/rotate all`: every runbook that applies to this repository",
        "- `/rotate status`: what is running, queued, scheduled and recently done",
    ]
    return "\n".join(lines)


def denied_reply(author: str) -> str:
    """The polite answer to someone without write access."""
    return (
        f"Sorry @{author}, only people with write, maintain or admin permission on this "
        "repository can run rotation commands, so I did not run anything. A maintainer can "
        "comment the command for you."
    )


def not_queued_reply(admission: Admission) -> str:
    """Why a rotation was not queued."""
    return {
        "already-running": "A rotation of this repository is already running; I did not start "
        "another. Comment again when it has finished (see `/rotate status`).",
        "already-queued": "The same rotation is already queued; it will run shortly.",
        "queue-full": "The work queue is full right now; nothing was started. Please try again "
        "in a few minutes.",
        "stopping": "The service is restarting; nothing was started. Please comment again in a "
        "minute.",
    }.get(admission, f"Nothing was started ({admission}).")


def _line(summary: RunSummary) -> str:
    target = f" {summary.target}" if summary.target else ""
    link = f" — {summary.published.url}" if summary.published else ""
    audit = f" (audit run `{summary.run_id}`: `rotation-bot audit show {summary.run_id}`)"
    return f"- **{summary.runbook}**{target}: {summary.outcome}{link}. {summary.message}{audit}"


def result_reply(author: str, result: WorkResult) -> tuple[Reaction, str]:
    """The reaction and reply for a finished request."""
    if not result.started:
        return "-1", (
            f"@{author} the service stopped before this rotation started; nothing ran. "
            "Please comment the command again."
        )
    if result.error is not None:
        return "-1", f"@{author} the rotation could not run: {result.error}. Nothing was published."
    lines = [_line(summary) for summary in result.summaries]
    if all(summary.outcome in SUCCESS_OUTCOMES for summary in result.summaries):
        body = "\n".join(lines) if lines else "- nothing to rotate: no runbook applies here."
        return "+1", f"@{author} rotation finished:\n{body}"
    return "-1", (
        f"@{author} rotation failed; nothing was published for the failed runs:\n"
        + "\n".join(lines)
    )


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def status_reply(
    repo: str,
    queue: WorkQueue,
    recent: list[dict[str, Any]],
    next_runs: Mapping[str, datetime | None],
) -> str:
    """What is running, queued, scheduled and recently finished for `repo`."""
    activity = queue.activity(repo)
    lines = [f"**rotation-bot status for {repo}**", ""]
    if activity.running is None:
        lines.append("- Running: nothing")
    else:
        running = activity.running
        since = datetime.fromtimestamp(activity.since, UTC) if activity.since else None
        lines.append(
            f"- Running: {', '.join(running.runbooks or ('all',))} "
            f"({running.trigger.kind} by {running.trigger.actor}) since {_when(since)}"
        )
    lines.append(f"- Queued: {len(activity.queued)}")
    for runbook, moment in sorted(next_runs.items()):
        lines.append(f"- Next scheduled {runbook}: {_when(moment)}")
    if recent:
        lines += [
            "",
            "| run | runbook | target | outcome | started | pull request |",
            "| --- | --- | --- | --- | --- | --- |",
        ]
        for run in recent:
            lines.append(
                f"| `{str(run['id'])[:8]}` | {run['runbook']} | {run['target'] or '-'} | "
                f"{run['outcome'] or 'running'} | {_when(run['started_at'])} | "
                f"{run['proposal_url'] or '-'} |"
            )
    return "\n".join(lines)


# --- GitHub calls --------------------------------------------------------------------------------


class ChatGitHub:
    """Permission checks, reactions and replies through PyGithub (one client per repository)."""

    def __init__(self, client_for: ClientFor) -> None:
        self.client_for = client_for

    def _repository(self, repo: str) -> Repository:
        # Lazy objects: a reaction or a reply is one POST, with no GETs of the repository,
        # issue or comment before it.
        return self.client_for(repo).withLazy(True).get_repo(repo)

    def permission(self, repo: str, login: str) -> str:
        """`login`'s role on `repo` (admin, maintain, write, triage, read or none)."""
        repository = self._repository(repo)
        try:
            level = _checked(repository.get_collaborator_permission(login), repo)
            if level in TRIGGERING_PERMISSIONS:
                return level
            # `permission` folds maintain into write; a custom role may still carry write.
            return _checked(repository.get_collaborator_role_name(login), repo)
        except UnknownObjectException:
            return "none"
        except (GithubException, requests.RequestException) as error:
            raise _unavailable(repo, "read the commenter's permission", error) from error

    def react(self, event: CommentEvent, content: Reaction) -> None:
        """Put a reaction on the command's comment."""
        try:
            issue = self._repository(event.repo).get_issue(event.issue_number)
            comment = issue.get_comment(event.comment_id)
            comment.create_reaction(content)
        except (GithubException, requests.RequestException) as error:
            raise _unavailable(event.repo, "react to the comment", error) from error

    def reply(self, event: CommentEvent, body: str) -> None:
        """Comment on the issue or pull request the command came from."""
        try:
            issue = self._repository(event.repo).get_issue(event.issue_number)
            issue.create_comment(redact(body))
        except (GithubException, requests.RequestException) as error:
            raise _unavailable(event.repo, "reply to the comment", error) from error


def _checked(level: object, repo: str) -> str:
    if not isinstance(level, str) or not re.match(r"^[a-z_-]{1,40}$", level):
        raise InvalidRemoteData(f"GitHub gave permission {level!r} for {repo}; expected a role")
    return level


def _unavailable(repo: str, action: str, error: Exception) -> ServiceUnavailable:
    status = error.status if isinstance(error, GithubException) else type(error).__name__
    return ServiceUnavailable(
        f"GitHub: could not {action} on {repo} ({status}); check the token's or App's "
        "permissions (issues: write, metadata: read)",
        repo=repo,
    )


# --- handling a command ------------------------------------------------------------------------


class ChatCommands:
    """Handles `/rotate` comments in a small bounded pool, off the webhook's request thread."""

    def __init__(
        self,
        *,
        github: ChatGitHub,
        queue: WorkQueue,
        runbooks: Mapping[str, Runbook],
        audit: AuditStore,
        metrics: Metrics,
        next_runs: Callable[[str], Mapping[str, datetime | None]],
        workers: int = 2,
        capacity: int = 64,
    ) -> None:
        self.github = github
        self.queue = queue
        self.runbooks = dict(runbooks)
        self.audit = audit
        self.metrics = metrics
        self.next_runs = next_runs
        self._slots = threading.BoundedSemaphore(capacity)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat")

    def wants(self, event: CommentEvent) -> bool:
        """Whether the comment is a `/rotate` command at all (cheap; no network)."""
        return parse_command(event.body, self.runbooks) is not None

    def accept(self, event: CommentEvent) -> bool:
        """Handle the comment in the background; False when too many are waiting already."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            self._pool.submit(self._guarded, event)
        except RuntimeError:  # the pool was shut down
            self._slots.release()
            return False
        return True

    def close(self) -> None:
        """Stop taking comments and let those being handled finish (their replies are short
        API calls; a rotation they request is refused by the stopping queue)."""
        self._pool.shutdown(wait=True)

    def _guarded(self, event: CommentEvent) -> None:
        try:
            result = self.handle(event)
        except BotError as error:
            log.warning("chat command failed repo=%s error=%s", event.repo, error.message)
            result = "failed"
        except Exception:
            log.exception("chat command crashed repo=%s", event.repo)
            result = "failed"
        finally:
            self._slots.release()
        self.metrics.chat_commands.labels(result=result).inc()

    def handle(self, event: CommentEvent) -> str:
        """Check permission, acknowledge, and act; returns what happened (a metrics label)."""
        command = parse_command(event.body, self.runbooks)
        if command is None:
            return "ignored"
        if self.github.permission(event.repo, event.author) not in TRIGGERING_PERMISSIONS:
            self.github.reply(event, denied_reply(event.author))
            return "denied"
        self.github.react(event, "eyes")
        if command.action == "unknown":
            self.github.reply(event, help_reply(self.runbooks, command.problem))
            return "unknown"
        if command.action == "status":
            recent = [
                run
                for run in self.audit.list_runs(limit=200)
                if repository_key(run["repo"]) == repository_key(event.repo)
            ][:5]
            self.github.reply(
                event, status_reply(event.repo, self.queue, recent, self.next_runs(event.repo))
            )
            return "status"
        request = RunRequest(
            repo=event.repo,
            trigger=Trigger(kind="chat", actor=event.author, url=event.comment_url),
            runbooks=command.runbooks,
            target=command.target,
        )
        admission = self.queue.submit(
            request, if_busy="reject", on_done=lambda result: self._finished(event, result)
        )
        if admission != "queued":
            self.github.reply(event, f"@{event.author} " + not_queued_reply(admission))
            return admission
        return "queued"

    def _finished(self, event: CommentEvent, result: WorkResult) -> None:
        reaction, body = result_reply(event.author, result)
        try:
            self.github.react(event, reaction)
            self.github.reply(event, body)
        except BotError as error:
            log.warning("chat answer failed repo=%s error=%s", event.repo, error.message)
