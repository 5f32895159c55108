"""Real git repositories for the tests."""

from __future__ import annotations

from pathlib import Path

import git


def commit_directory(path: Path, message: str = "fixture") -> git.Repo:
    """Make `path` a git repository on `main` (if it is not one) and commit everything in it."""
    repo = git.Repo.init(path, initial_branch="main")
    with repo.config_writer() as writer:
        writer.set_value("user", "name", "Fixture")
        writer.set_value("user", "email", "fixture@example.invalid")
    repo.git.add("--all")
    repo.git.commit("-m", message, "--no-verify")
    return repo
