"""What the package-manager integration tests share: run the real bot on a layout repository
and read back its branches, files, lockfile entries and audit evidence."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import git

from tests.conftest import Env, bot_json
from tests.support.layouts import load_layout
from tests.test_sharp_runbook import audit, branches

NEWER = ("0.33.5", "0.33.6", "0.33.7-rc.1", "0.34.0", "0.34.1", "0.35.0-rc.0")


@dataclass
class Outcome:
    """One `rotation-bot run --json`: exit code, summaries, and each run's step evidence."""

    code: int
    summaries: list[dict[str, Any]]
    env: Env

    def summary(self, target: str) -> dict[str, Any]:
        return next(item for item in self.summaries if item["target"] == target)

    def evidence(self, target: str, kind: str) -> dict[str, Any]:
        run_id = self.summary(target)["run_id"]
        record = next(r for r in audit(self.env).run_steps(run_id) if r["kind"] == kind)
        evidence: dict[str, Any] = record["evidence"]
        return evidence


def run_bot(env: Env, path: object, *args: str) -> Outcome:
    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp", *args)
    return Outcome(code, summaries or [], env)


def show(repo: git.Repo, branch: str, path: str) -> str:
    """A file at the tip of `branch`."""
    text: str = repo.git.show(f"{branch}:{path}")
    return text


def expected_lines(name: str, file: str) -> list[tuple[str, str]]:
    """The layout `name`'s expected (line before, line after) pairs for one file."""
    return [
        (edit["line_before"], edit["line_after"])
        for project in load_layout(name).projects()
        for edit in project.get("edits", ())
        if edit["file"] == file
    ]


def changed_lines(repo: git.Repo, branch: str, path: str) -> list[tuple[str, str]]:
    """(before, after) line pairs that differ between main and `branch` (same line count)."""
    before = show(repo, "main", path).splitlines()
    after = show(repo, branch, path).splitlines()
    assert len(before) == len(after), f"{path}: lines added or removed"
    return [(old, new) for old, new in zip(before, after, strict=True) if old != new]


__all__ = ["NEWER", "Outcome", "branches", "changed_lines", "expected_lines", "run_bot", "show"]
