"""What the package-manager integration tests share: run the real bot on a layout repository,
read back its branches, files, lockfile entries and audit evidence, and the checks every
manager's rotation passes (pins locked at the target, a second run up to date, a tampered
binary failing closed)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from bot.manifests.locked import LockedTree
from tests.conftest import Env, bot_json, pin_names
from tests.support.layouts import load_layout
from tests.support.verdaccio import Verdaccio
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


def assert_pins_locked_at_target(lock: LockedTree, registry: Verdaccio) -> None:
    """Each pinned binary and libvips package is locked once, at the 0.33.6 target's version,
    with the integrity the registry published."""
    for name in pin_names():
        version = "1.0.4" if "libvips" in name else "0.33.6"
        (entry,) = lock.find(name)
        assert (entry.version, entry.integrity) == (version, registry.integrity(name, version))


def assert_second_run_is_up_to_date(env: Env, path: Path, repo: git.Repo, *args: str) -> None:
    """Running the bot again (with `args`) finds every rotation up to date and moves no
    branch."""
    heads = branches(repo)
    again = run_bot(env, path, *args)

    assert again.code == 0
    assert {item["outcome"] for item in again.summaries} == {"up-to-date"}
    assert branches(repo) == heads


def assert_a_tampered_binary_fails_closed(
    env: Env, path: Path, repo: git.Repo, registry: Verdaccio
) -> str:
    """With @img/sharp-linuxmusl-x64@0.33.6 corrupted in the registry, a rotation to 0.33.6
    fails at verify-tarballs and pushes no branch; returns the failure's message."""
    registry.tamper("@img/sharp-linuxmusl-x64", "0.33.6")

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 1
    (summary,) = outcome.summaries
    assert summary["outcome"] == "failed" and "verify-tarballs" in summary["message"]
    assert list(branches(repo)) == ["main"]
    message: str = summary["message"]
    return message


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


__all__ = [
    "NEWER",
    "Outcome",
    "assert_a_tampered_binary_fails_closed",
    "assert_pins_locked_at_target",
    "assert_second_run_is_up_to_date",
    "branches",
    "changed_lines",
    "expected_lines",
    "run_bot",
    "show",
]
