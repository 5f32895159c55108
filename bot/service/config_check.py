"""The config check on pull requests: a person's pull request that changes
`.github/rotation-bot.yml` gets the validation result as a comment.

A `pull_request` delivery (opened, synchronize, reopened) names the head and base commits; the
file is read at both through the forge (nothing from the pull request is checked out or run).
When the head's file differs from the base's, it is checked as `rotation-bot validate` checks it
(for the runbooks the service runs) and the result is commented: every problem on its own line
with its line number, or that it is valid; a head file over the size cap or not UTF-8 is such a
problem too.  The comment carries the result's digest, and a new one is written only when the
newest such comment says something else, so a push that leaves the verdict as it was writes
nothing.  A push that takes the change back out says so once, under the earlier verdict; a pull
request that never changed the file gets no comment.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from bot.config import REPO_CONFIG_PATH, ConfigProblem, validate_repo_config
from bot.errors import ConfigError
from bot.forges.base import Forge
from bot.markdown import code_block
from bot.service.chat import REPOSITORY_NAME, positive_id

_ACTIONS = ("opened", "synchronize", "reopened")
_SHA = re.compile(r"^[0-9a-f]{40}$")
FAMILY = "config-check"

CheckResult = Literal["unchanged", "valid", "invalid"]


@dataclass(frozen=True)
class PullRequestEvent:
    """The fields of a `pull_request` webhook the config check needs, validated."""

    repo: str
    number: int
    head_sha: str
    base_sha: str


def pull_request_event(payload: Any) -> PullRequestEvent | None:
    """A pull request opened, pushed to or reopened, from a `pull_request` payload; None when it
    is another action or malformed."""
    try:
        if payload["action"] not in _ACTIONS:
            return None
        pull = payload["pull_request"]
        event = PullRequestEvent(
            repo=payload["repository"]["full_name"],
            number=pull["number"],
            head_sha=pull["head"]["sha"],
            base_sha=pull["base"]["sha"],
        )
    except (KeyError, TypeError, AttributeError):
        return None
    valid = (
        isinstance(event.repo, str)
        and bool(REPOSITORY_NAME.match(event.repo))
        and positive_id(event.number)
        and all(
            isinstance(sha, str) and _SHA.match(sha) for sha in (event.head_sha, event.base_sha)
        )
    )
    return event if valid else None


def config_check_reply(head_sha: str, problems: Sequence[ConfigProblem]) -> str:
    """The comment: the problems, one a line, or that the file is valid (as of `head_sha`)."""
    where = f"`{REPO_CONFIG_PATH}` as of {head_sha[:12]}"
    if not problems:
        return f"rotation-bot checked {where}: it is valid."
    lines = [
        f"rotation-bot checked {where}: {len(problems)} problem"
        f"{'s' if len(problems) != 1 else ''}; the bot cannot use this file until "
        "they are fixed (`rotation-bot validate` shows the same).",
        "",
        *code_block("\n".join(str(problem) for problem in problems)),
    ]
    return "\n".join(lines)


def check_config(forge: Forge, kinds: Mapping[str, str], event: PullRequestEvent) -> CheckResult:
    """Validate the config file the pull request changes and comment the result when it is new;
    `unchanged` when the pull request leaves the file alone (or removes it)."""
    try:
        head = forge.read_file(event.repo, REPO_CONFIG_PATH, event.head_sha)
    except ConfigError as error:  # the file itself: over the size cap, or not UTF-8
        message = error.message.removeprefix(f"{REPO_CONFIG_PATH} ")
        problems = [ConfigProblem(REPO_CONFIG_PATH, None, message)]
    else:
        if head is None or head == forge.read_file(event.repo, REPO_CONFIG_PATH, event.base_sha):
            # a verdict said earlier on this pull request no longer holds: say so, once
            forge.ensure_latest_comment(
                event.repo,
                event.number,
                FAMILY,
                f"{FAMILY}/unchanged",
                f"rotation-bot: as of {event.head_sha[:12]} this pull request no longer changes "
                f"`{REPO_CONFIG_PATH}`; nothing to check.",
                follow_up=True,
            )
            return "unchanged"
        _, problems = validate_repo_config(head, kinds=kinds)
    digest = hashlib.sha256("\n".join(map(str, problems)).encode("utf-8")).hexdigest()[:16]
    forge.ensure_latest_comment(
        event.repo,
        event.number,
        FAMILY,
        f"{FAMILY}/{digest}",
        config_check_reply(event.head_sha, problems),
    )
    return "invalid" if problems else "valid"
