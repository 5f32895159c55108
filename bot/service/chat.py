"""The `/rotate` chat commands: parse a comment, check who asked, act or queue the work, answer.

Commands (first line of an issue or pull-request comment):

    /rotate sharp            /rotate base-image       /rotate all
    /rotate sharp 0.34.5     (an exact target; strict semver)
    /rotate status           /rotate help
    /rotate rebase [RUNBOOK]     regenerate open rotations on the current base (re-run the
                                 runbook; never a git rebase of a lockfile)
    /rotate recreate [RUNBOOK]   close open rotations and open them afresh (edits are dropped)
    /rotate explain [RUNBOOK]    why the bot proposes what it proposes, or why nothing
    /rotate ignore [RUNBOOK] 0.35 | 0.35.2     hold a line or a version back
    /rotate unignore [RUNBOOK] 0.35 | 0.35.2   lift that hold
    /rotate approve [RUNBOOK] 0.35.5           approve a major rotation (`major-approval: true`)

On a rotation pull request, rebase, recreate and explain act on that pull request's rotation;
elsewhere on every runbook.  Where RUNBOOK is left out of ignore, unignore and approve, it is the
pull request's runbook, or the one runbook that watches an npm package.  Holds and approvals
are stored in the audit trail (chained records, with who gave them) and take effect at once.

Only users whose repository permission (read through the forge, never the payload's
`author_association`) is write, maintain or admin may use them; anyone else gets a polite reply
and nothing runs.  A command is acknowledged with 👀, then answered with 👍 and the result, or 👎
and the failure summary with the audit run id.  Comments by bots, and comments whose first line
is not a command, are ignored, so the bot's own replies never trigger anything.  Everything is
said through the `Forge` (`permission`, `react`, `reply`): this module has no GitHub client.
The same pool runs the config check of pull requests (bot.service.config_check).

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
from typing import TYPE_CHECKING, Any, Literal

from bot.audit import AuditStore
from bot.errors import BotError, InvalidRemoteData
from bot.forges.base import BRANCH_PREFIX, Forge, Reaction
from bot.lifecycle.records import CommandRecords, valid_selector
from bot.models import Action, RunRequest, RunSummary, Trigger, strict_version
from bot.runbook import Runbook
from bot.service.locks import repository_key
from bot.service.metrics import Metrics
from bot.service.workqueue import Admission, RotationQueue, WorkResult
from bot.watchers import watch_kind

if TYPE_CHECKING:
    from bot.service.config_check import PullRequestEvent

log = logging.getLogger(__name__)

_COMMAND = re.compile(r"^ {0,3}/rotate(?:[ \t]+(?P<arguments>.*))?$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")  # CommonMark's, not str.splitlines()'s eight
REPOSITORY_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]*/[A-Za-z0-9._-]+$")
_LOGIN = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\[bot\])?$")
TRIGGERING_PERMISSIONS = frozenset({"admin", "maintain", "write"})
SUCCESS_OUTCOMES = frozenset(
    {"proposed", "up-to-date", "nothing-to-do", "held", "waiting", "recorded", "explained"}
)
Verb = Literal[
    "rotate",
    "status",
    "help",
    "rebase",
    "recreate",
    "explain",
    "ignore",
    "unignore",
    "approve",
    "unknown",
]
_SCOPED: tuple[Action, ...] = ("rebase", "recreate", "explain")
_RECORDED = ("ignore", "unignore", "approve")


# --- commands --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """A parsed `/rotate` comment: what to do (`unknown`: not understood, with the problem),
    which runbooks (None: all, or the pull request's), a target version or a hold selector."""

    action: Verb
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
    if name == "help" and len(words) == 1:
        return Command("help")
    if name == "all" and len(words) == 1:
        return Command("rotate", runbooks=None)
    if name in _SCOPED:
        return _scoped(name, words[1:], runbooks)
    if name in _RECORDED:
        return _recorded(name, words[1:], runbooks)
    if name not in runbooks:
        return Command("unknown", problem=f"there is no runbook or command `{_quote(words[0])}`")
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


def _scoped(verb: Action, rest: list[str], runbooks: Mapping[str, Runbook]) -> Command:
    if not rest:
        return Command(verb)
    if len(rest) == 1 and rest[0].lower() in runbooks:
        return Command(verb, runbooks=(rest[0].lower(),))
    return Command("unknown", problem=f"`/rotate {verb}` takes at most a runbook name")


def _recorded(verb: str, rest: list[str], runbooks: Mapping[str, Runbook]) -> Command:
    named: tuple[str, ...] | None = None
    if len(rest) == 2:
        runbook = rest[0].lower()
        if runbook not in runbooks or runbooks[runbook].watch.npm is None:
            return Command("unknown", problem=f"`{_quote(rest[0])}` is no runbook of versions")
        named, rest = (runbook,), rest[1:]
    if len(rest) != 1:
        example = "0.35.5" if verb == "approve" else "0.35"
        return Command("unknown", problem=f"say `/rotate {verb} {example}`")
    word = rest[0]
    if verb == "approve":
        try:
            version = strict_version(word, source="the command")
        except InvalidRemoteData:
            return Command(
                "unknown", problem=f"`{_quote(word)}` is not an exact version like 0.35.5"
            )
        return Command("approve", runbooks=named, target=version)
    if not valid_selector(word):
        return Command(
            "unknown", problem=f"`{_quote(word)}` is not a line like 0.35 or a version like 0.35.2"
        )
    return Command("ignore" if verb == "ignore" else "unignore", runbooks=named, target=word)


def _quote(word: str) -> str:
    """A user's word, safe inside inline code and short."""
    return re.sub(r"[^A-Za-z0-9._@/+-]", "", word)[:40]


def runbook_of_branch(
    branch: str, runbooks: Mapping[str, Runbook]
) -> tuple[str, str | None] | None:
    """(runbook, version or None) of a bot branch `rotation-bot/<runbook>-<version>`."""
    for name in sorted(runbooks, key=len, reverse=True):
        prefix = f"{BRANCH_PREFIX}{name}"
        if branch == prefix:
            return name, None
        if branch.startswith(f"{prefix}-"):
            rest = branch.removeprefix(f"{prefix}-")
            try:
                return name, strict_version(rest, source="the branch")
            except InvalidRemoteData:
                return name, None
    return None


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
    on_pull_request: bool = False


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
            on_pull_request=isinstance(issue.get("pull_request"), dict),
        )
    except (KeyError, TypeError, AttributeError):
        return None
    valid = (
        isinstance(event.repo, str)
        and bool(REPOSITORY_NAME.match(event.repo))
        and positive_id(event.issue_number)
        and positive_id(event.comment_id)
        and isinstance(event.comment_url, str)
        and event.comment_url.startswith(("https://", "http://"))
        and isinstance(event.author, str)
        and bool(_LOGIN.match(event.author))
        and not event.author.endswith("[bot]")
        and isinstance(event.body, str)
    )
    return event if valid else None


def positive_id(value: object) -> bool:
    """Whether `value` is a JSON number usable as an id or issue number (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


# --- replies (pure) ----------------------------------------------------------------------------


def help_reply(runbooks: Mapping[str, Runbook], problem: str | None) -> str:
    """The list of valid commands, after what was wrong with the comment (None: asked for)."""
    lines = [
        f"I did not understand that: {problem}." if problem else "rotation-bot's commands:",
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
        "- `/rotate rebase [runbook]`: regenerate open rotations on the current base "
        "(on a rotation pull request: that one)",
        "- `/rotate recreate [runbook]`: close open rotations and open them afresh",
        "- `/rotate explain [runbook]`: why the bot proposes what it proposes, or why nothing",
        "- `/rotate ignore [runbook] 0.35` or `0.35.2`: hold a line or a version back",
        "- `/rotate unignore [runbook] 0.35`: lift that hold",
        "- `/rotate approve [runbook] 0.35.5`: approve a major rotation",
        "- `/rotate help`: this list",
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
    audit = f" (audit run `{summary.run_id}`: `rotation-bot audit show {summary.run_id}`)"
    if summary.outcome == "explained":
        return f"{summary.message}\n{audit.strip()}"
    link = f" — {summary.published.url}" if summary.published else ""
    return f"- **{summary.runbook}**{target}: {summary.outcome}{link}. {summary.message}{audit}"


# how a reply names what finished ("rebase finished", "rotation finished")
_NOUNS = {"rotate": "rotation", "explain": "explanation"}


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
        verb = _NOUNS.get(result.request.action, result.request.action)
        body = "\n".join(lines) if lines else "- nothing to rotate: no runbook applies here."
        return "+1", f"@{author} {verb} finished:\n{body}"
    return "-1", (
        f"@{author} rotation failed; nothing was published for the failed runs:\n"
        + "\n".join(lines)
    )


_NOT_NOW = {
    "queue-full": "the work queue is full",
    "stopping": "the service is restarting",
}


def recorded_reply(author: str, command: Command, runbook: str, follow_up: Admission) -> str:
    """The answer to ignore, unignore and approve, once stored; `follow_up` is what the queue
    said to the run that acts on it (when it took none, it acts at the next scheduled cycle)."""
    selector = command.target or ""
    acted = follow_up in ("queued", "already-queued")
    if command.action == "ignore":
        reply = (
            f"@{author} holding back {runbook} {selector}: no rotation to it is proposed, and an "
            f"open one is closed at the next cycle. `/rotate unignore {selector}` lifts it."
        )
    elif command.action == "unignore":
        reply = f"@{author} {runbook} {selector} is no longer held back; it may be proposed again."
    else:
        when = "now" if acted else "at the next cycle"
        reply = (
            f"@{author} approved the major rotation of {runbook} to {selector}; its pull request "
            f"is opened {when} (if that is the version planned)."
        )
    if acted:
        return reply
    reason = _NOT_NOW.get(follow_up, follow_up)
    return (
        f"{reply} No run was started now ({reason}); the next scheduled cycle acts on it, or "
        f"comment `/rotate {runbook}` later to act sooner."
    )


def _when(moment: datetime | str | None) -> str:
    if moment is None:
        return "-"
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def status_reply(
    repo: str,
    queue: RotationQueue,
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


# --- handling a command ------------------------------------------------------------------------


@dataclass(frozen=True)
class AnswerComment:
    """Answers a command's comment once its request is done: the reaction and the reply.

    The queue calls it; the fleet's queue carries `event` with the job instead, and the worker
    that ran the request builds the same answer through its own forge."""

    forge: Forge
    event: CommentEvent

    def __call__(self, result: WorkResult) -> None:
        reaction, body = result_reply(self.event.author, result)
        try:
            self.forge.react(self.event.repo, self.event.comment_id, reaction)
            self.forge.reply(self.event.repo, self.event.issue_number, body)
        except BotError as error:
            log.warning(
                "chat answer failed", extra={"repo": self.event.repo, "error": error.message}
            )


class ChatCommands:
    """Handles `/rotate` comments in a small bounded pool, off the webhook's request thread."""

    def __init__(
        self,
        *,
        forge: Forge,
        queue: RotationQueue,
        runbooks: Mapping[str, Runbook],
        audit: AuditStore,
        metrics: Metrics,
        next_runs: Callable[[str], Mapping[str, datetime | None]],
        workers: int = 2,
        capacity: int = 64,
    ) -> None:
        self.forge = forge
        self.queue = queue
        self.runbooks = dict(runbooks)
        self.audit = audit
        self.records = CommandRecords(audit)
        self.metrics = metrics
        self.next_runs = next_runs
        self._slots = threading.BoundedSemaphore(capacity)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="chat")

    def wants(self, event: CommentEvent) -> bool:
        """Whether the comment is a `/rotate` command at all (cheap; no network)."""
        return parse_command(event.body, self.runbooks) is not None

    def accept(self, event: CommentEvent) -> bool:
        """Handle the comment in the background; False when too many are waiting already."""
        return self._in_background(lambda: self._guarded(event))

    def accept_config_check(self, event: PullRequestEvent) -> bool:
        """Check the config file a pull request changes (`config_check`), in the background;
        False when too many are waiting already."""
        return self._in_background(lambda: self._guarded_check(event))

    def _in_background(self, work: Callable[[], None]) -> bool:
        """Run `work` in the pool if a slot is free (`work` releases it); False when too many
        are waiting already or the pool was shut down."""
        if not self._slots.acquire(blocking=False):
            return False
        try:
            self._pool.submit(work)
        except RuntimeError:  # the pool was shut down
            self._slots.release()
            return False
        return True

    def _guarded_check(self, event: PullRequestEvent) -> None:
        from bot.service.config_check import check_config  # noqa: PLC0415 - it imports this

        kinds = {name: watch_kind(runbook) for name, runbook in self.runbooks.items()}
        try:
            result = f"config-{check_config(self.forge, kinds, event)}"
        except BotError as error:
            log.warning("config check failed", extra={"repo": event.repo, "error": error.message})
            result = "failed"
        except Exception:
            log.exception("config check crashed", extra={"repo": event.repo})
            result = "failed"
        finally:
            self._slots.release()
        self.metrics.chat_commands.labels(result=result).inc()

    def close(self) -> None:
        """Stop taking comments and let those being handled finish (their replies are short
        API calls; a rotation they request is refused by the stopping queue)."""
        self._pool.shutdown(wait=True)

    def _guarded(self, event: CommentEvent) -> None:
        try:
            result = self.handle(event)
        except BotError as error:
            log.warning("chat command failed", extra={"repo": event.repo, "error": error.message})
            result = "failed"
        except Exception:
            log.exception("chat command crashed", extra={"repo": event.repo})
            result = "failed"
        finally:
            self._slots.release()
        self.metrics.chat_commands.labels(result=result).inc()

    def handle(self, event: CommentEvent) -> str:
        """Check permission, acknowledge, and act; returns what happened (a metrics label)."""
        command = parse_command(event.body, self.runbooks)
        if command is None:
            return "ignored"
        if self.forge.permission(event.repo, event.author) not in TRIGGERING_PERMISSIONS:
            self.forge.reply(event.repo, event.issue_number, denied_reply(event.author))
            return "denied"
        self.forge.react(event.repo, event.comment_id, "eyes")
        if command.action in ("unknown", "help"):
            self.forge.reply(
                event.repo, event.issue_number, help_reply(self.runbooks, command.problem)
            )
            return command.action
        if command.action == "status":
            recent = [
                run
                for run in self.audit.list_runs(limit=200)
                if repository_key(run["repo"]) == repository_key(event.repo)
            ][:5]
            self.forge.reply(
                event.repo,
                event.issue_number,
                status_reply(event.repo, self.queue, recent, self.next_runs(event.repo)),
            )
            return "status"
        if command.action in _RECORDED:
            return self._record(event, command)
        return self._submit(event, command)

    def _record(self, event: CommentEvent, command: Command) -> str:
        """Store an ignore, unignore or approve, answer, and queue a cycle of its runbook (so a
        held proposal closes, or an approved one opens, now)."""
        runbook = self._runbook_for(event, command)
        if runbook is None:
            names = sorted(name for name, item in self.runbooks.items() if item.watch.npm)
            self.forge.react(event.repo, event.comment_id, "-1")
            self.forge.reply(
                event.repo,
                event.issue_number,
                f"@{event.author} which runbook? Say `/rotate {command.action} "
                f"{names[0] if names else 'RUNBOOK'} {command.target}`.",
            )
            return "unknown"
        selector = command.target or ""
        if command.action == "approve":
            self.records.record_approval(
                event.repo, runbook, selector, by=event.author, url=event.comment_url
            )
        else:
            self.records.record_hold(
                event.repo,
                runbook,
                "ignore" if command.action == "ignore" else "unignore",
                selector,
                by=event.author,
                url=event.comment_url,
            )
        request = RunRequest(
            repo=event.repo,
            trigger=Trigger(kind="chat", actor=event.author, url=event.comment_url),
            runbooks=(runbook,),
        )
        follow_up = self.queue.submit(request, if_busy="wait")
        reply = recorded_reply(event.author, command, runbook, follow_up)
        self.forge.react(event.repo, event.comment_id, "+1")
        self.forge.reply(event.repo, event.issue_number, reply)
        return command.action

    def _runbook_for(self, event: CommentEvent, command: Command) -> str | None:
        if command.runbooks:
            return command.runbooks[0]
        on_pull = self._pull_request_rotation(event)
        if on_pull is not None:
            return on_pull[0]
        names = [name for name, runbook in self.runbooks.items() if runbook.watch.npm]
        return names[0] if len(names) == 1 else None

    def _pull_request_rotation(self, event: CommentEvent) -> tuple[str, str | None] | None:
        """(runbook, version) of the rotation pull request the comment is on, if it is one."""
        if not event.on_pull_request:
            return None
        branch = self.forge.find_proposal_branch(event.repo, event.issue_number)
        return None if branch is None else runbook_of_branch(branch, self.runbooks)

    def _submit(self, event: CommentEvent, command: Command) -> str:
        action: Action = "rotate"
        runbooks, target = command.runbooks, command.target
        if command.action in _SCOPED:
            action = command.action
            if runbooks is None:
                on_pull = self._pull_request_rotation(event)
                if on_pull is not None:
                    runbooks, target = (on_pull[0],), on_pull[1]
        request = RunRequest(
            repo=event.repo,
            trigger=Trigger(kind="chat", actor=event.author, url=event.comment_url),
            runbooks=runbooks,
            target=target,
            action=action,
        )
        admission = self.queue.submit(
            request, if_busy="reject", on_done=AnswerComment(self.forge, event)
        )
        if admission != "queued":
            self.forge.reply(
                event.repo, event.issue_number, f"@{event.author} " + not_queued_reply(admission)
            )
            return admission
        return "queued"
