"""Comments and reactions on GitHub: who may command the bot, the 👀/👍/👎 on a command, replies,
and the one-per-subject comments the bot leaves on pull requests.

A permission is read through the API (never the webhook payload's `author_association`).  A
reaction or a reply is one POST with no GETs before it (PyGithub's lazy objects).  A comment the
bot must say once (`ensure_comment`) ends with a hidden marker
(`<!-- rotation-bot-comment KEY -->`) and is looked for among the pull request's comments
before it is written, so no restart or second process repeats it.  A verdict the bot repeats
only when it changes (the config check) is a family of keys: only the newest comment of the
family counts.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from github.Repository import Repository

from bot.errors import InvalidRemoteData, RepositoryError, redact
from bot.forges.base import Reaction
from bot.forges.github.client import GitHubClient, split_name

TRIGGERING_PERMISSIONS = frozenset({"admin", "maintain", "write"})
_ROLE = re.compile(r"^[a-z_-]{1,40}$")
_KEY = re.compile(r"^[A-Za-z0-9._@/+-]{1,120}$")


_MARKER = "<!-- rotation-bot-comment "


def comment_marker(key: str) -> str:
    """The hidden line that identifies a comment the bot says once per `key`."""
    if not _KEY.match(key):
        raise ValueError(f"comment key {key!r} must be 1-120 of A-Z a-z 0-9 . _ @ / + -")
    return f"{_MARKER}{key} -->"


class Comments:
    """Permissions, reactions and comments in the repositories one `GitHubClient` reaches."""

    def __init__(self, client: GitHubClient) -> None:
        self.client = client
        self.host = client.host

    def _repository(self, repo: str) -> Repository:
        # Lazy objects: a reaction or a reply is one POST, with no GETs of the repository,
        # issue or comment before it.
        return self.client.client_for(repo).withLazy(True).get_repo(repo)

    def permission(self, repo: str, login: str) -> str:
        """`login`'s role on `repo` (admin, maintain, write, triage, read or none)."""
        repository = self._repository(repo)
        try:
            level = _role(
                self.client.call(
                    f"reading {login}'s permission on {repo}",
                    lambda: repository.get_collaborator_permission(login),
                    idempotent=True,
                ),
                repo,
            )
            if level in TRIGGERING_PERMISSIONS:
                return level
            # `permission` folds maintain into write; a custom role may still carry write.
            return _role(
                self.client.call(
                    f"reading {login}'s role on {repo}",
                    lambda: repository.get_collaborator_role_name(login),
                    idempotent=True,
                ),
                repo,
            )
        except RepositoryError:  # 404: not a user GitHub knows here
            return "none"

    def react(self, repo: str, comment_id: int, content: Reaction) -> None:
        """Put a reaction on an issue or pull-request comment (a repeat is a no-op on GitHub)."""
        owner, name = split_name(repo)
        client = self.client.client_for(repo)
        path = f"/repos/{quote(owner)}/{quote(name)}/issues/comments/{comment_id}/reactions"
        self.client.call(
            f"reacting to comment {comment_id} in {repo}",
            lambda: client.requester.requestJsonAndCheck("POST", path, input={"content": content}),
            idempotent=True,
        )

    def reply(self, repo: str, number: int, body: str) -> None:
        """Comment on issue or pull request `number`."""
        issue = self._repository(repo).get_issue(number)
        self.client.call(
            f"commenting on #{number} in {repo}",
            lambda: issue.create_comment(redact(body)),
            idempotent=False,
            uncertain_is_error=True,
        )

    def ensure_comment(
        self,
        repo: str,
        number: int,
        key: str,
        body: str,
        *,
        family: str | None = None,
        follow_up: bool = False,
    ) -> bool:
        """Comment `body` on `number` unless a comment of the bot's already carries `key`'s
        marker (with `family`: unless the newest comment of that family, whose keys are
        `family/…`, carries it, or, with `follow_up`, the family has none); True when it wrote
        one."""
        marker = comment_marker(key)
        owner, name = split_name(repo)
        client = self.client.client_for(repo)
        existing = self.client.list_all(
            client, f"/repos/{quote(owner)}/{quote(name)}/issues/{number}/comments", {}
        )
        bodies = [c["body"] for c in existing if isinstance(c.get("body"), str)]
        if family is not None:
            if not key.startswith(f"{family}/"):
                raise ValueError(f"comment key {key!r} is not of family {family!r}")
            bodies = [text for text in bodies if f"{_MARKER}{family}/" in text][-1:]
            if follow_up and not bodies:
                return False
        if any(marker in text for text in bodies):
            return False
        self.reply(repo, number, f"{redact(body).rstrip()}\n\n{marker}\n")
        return True


def _role(level: object, repo: str) -> str:
    if not isinstance(level, str) or not _ROLE.match(level):
        raise InvalidRemoteData(f"GitHub gave permission {level!r} for {repo}; expected a role")
    return level
