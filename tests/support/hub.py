"""A repository served by the GitHub-shaped server, rotated by the real `rotation-bot run`.

`served_hub(tmp_path, env)` builds a real project (sharp 0.33.4, real lockfile from the shared
Verdaccio), serves a bare clone of it as `octo/app`, and points the bot at the server with a
token; `hub.people` is a working clone to push as a person (Jane, whose email maps to the login
`jane`; alice has write access).  Wrap it in a fixture of your test package.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from bot.audit import AuditStore
from bot.lifecycle.records import CommandRecords
from tests.conftest import Env, bot_json, make_project
from tests.support.github_api import GitHubApi, GitRepository, ItemState, start_github_api

REPO = "octo/app"
TOKEN = "ghp_lifecycle_token"
PATCH = "rotation-bot/sharp-0.33.6"
MAJOR = "rotation-bot/sharp-0.34.1"
CONFIG = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"


@dataclass
class Hub:
    """The served repository, the server, and the bot's environment."""

    api: GitHubApi
    env: Env
    people: GitRepository
    root: Path

    def run(self, *extra: str) -> list[dict[str, Any]]:
        """`rotation-bot run --repo octo/app --runbook sharp --json`; the runs."""
        code, runs = bot_json(self.env, "run", "--repo", REPO, "--runbook", "sharp", *extra)
        assert code == 0, runs
        assert isinstance(runs, list)
        return runs

    def pulls(self, state: str = "open") -> dict[str, ItemState]:
        """Pull requests by head branch."""
        return {pull.head: pull for pull in self.api.pulls(REPO, state=state)}

    def branch(self, name: str) -> str | None:
        """Where a branch of the served repository points."""
        return self.api.repository(REPO).branch_sha(name)

    def writes(self) -> list[str]:
        """Every API write and git push so far, `METHOD path`."""
        return [
            f"{r.method} {r.path}"
            for r in self.api.requests
            if r.method != "GET" and not r.path.endswith("git-upload-pack")
        ]

    def push_as_person(self, files: dict[str, str], message: str, *, branch: str) -> str:
        """Commit `files` on `branch` as Jane and push; the new commit."""
        return self.people.commit(files, message, branch=branch)

    def config(self, text: str) -> None:
        """Change the repository's config on main (a commit by a person)."""
        self.people.commit({".github/rotation-bot.yml": text}, "Configure", branch="main")

    def audit(self) -> AuditStore:
        """The bot's audit store."""
        return AuditStore(f"sqlite:///{self.env.state / 'audit.sqlite3'}")

    def records(self) -> CommandRecords:
        """The commands stored in the bot's audit store."""
        return CommandRecords(self.audit())


def package_json(hub: Hub) -> dict[str, Any]:
    """main's package.json."""
    hub.people.git("fetch", "-q", "origin")
    text = hub.people.git("show", "origin/main:package.json")
    data: dict[str, Any] = json.loads(text)
    return data


@contextmanager
def served_hub(tmp_path: Path, env: Env) -> Iterator[Hub]:
    """The served project and the bot's environment pointed at the server (stopped after)."""
    project = tmp_path / "project"
    make_project(project, env, config=CONFIG)
    bare = tmp_path / "remote.git"
    git.Repo.clone_from(project, bare, bare=True)
    work = tmp_path / "people"
    subprocess.run(["git", "clone", "-q", str(bare), str(work)], check=True)
    running = start_github_api(tmp_path / "api")
    api = running.api
    api.add_repository(REPO, bare)
    api.add_token(TOKEN, login="rotation-bot")
    api.set_permission(REPO, "alice", "write")
    api.add_user_email("jane", "test@example.com")  # GitRepository commits as test@example.com
    env.extra.update(ROTATION_BOT_GITHUB_URL=api.api_url, ROTATION_BOT_GITHUB_TOKEN=TOKEN)
    try:
        yield Hub(api, env, GitRepository(bare, work), tmp_path)
    finally:
        running.stop()
