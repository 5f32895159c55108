"""When the machine fails under the bot — no space left for the worktree — `rotation-bot run`
says so in one line, exits 3, publishes nothing and leaves nothing behind; a run it had opened
is closed.  (A locked, read-only or full audit database: tests/audit/test_database_errors.py.)

The failure is real: a small tmpfs filled up in a private mount namespace (`unshare`)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import git
import pytest

from bot.audit import AuditStore
from tests.conftest import Env, make_project
from tests.support.bot_process import ROOT

NO_MAJOR = "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
BOT = f'"{sys.executable}" -m bot'


def can_mount() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
         "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return probe.returncode == 0


needs_mounts = pytest.mark.skipif(
    not can_mount(), reason="needs unshare and tmpfs mounts (root or user namespaces)"
)


def in_namespace(script: str, environ: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run a shell `script` in a private mount namespace, with `environ` and this checkout."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--", "sh", "-ec", script],
        env={**environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )


def one_line_unavailable(result: subprocess.CompletedProcess[str], message: str) -> None:
    assert result.returncode == 3, result.stderr
    lines = result.stderr.strip().splitlines()
    assert lines[-1].startswith("rotation-bot: unavailable: "), result.stderr
    assert message in lines[-1], lines[-1]
    assert "Traceback" not in result.stderr


@pytest.fixture
def checkout(tmp_path: Path, env: Env) -> git.Repo:
    return make_project(tmp_path / "app", env, config=NO_MAJOR)


def untouched(repo: git.Repo) -> None:
    assert [head.name for head in repo.heads] == ["main"]
    assert len(repo.git.worktree("list").splitlines()) == 1


@needs_mounts
def test_no_space_for_the_worktree_closes_the_run(
    tmp_path: Path, env: Env, checkout: git.Repo
) -> None:
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    result = in_namespace(
        f'mount -t tmpfs -o size=256k tmpfs "{temporary}"\n'
        f'dd if=/dev/zero of="{temporary}/filler" bs=4k 2>/dev/null || true\n'
        # two pages free: Python's check that TMPDIR is writable passes, a checkout does not
        f'truncate -s -8K "{temporary}/filler"\n'
        f'exec {BOT} run --repo "{checkout.working_tree_dir}" --runbook sharp\n',
        {**env.variables(), "TMPDIR": str(temporary)},
    )

    assert result.returncode == 3, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    (run,) = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}").list_runs()
    assert run["outcome"] == "error", run
    assert run["message"].startswith(f"cannot check out {checkout.working_tree_dir} into ")
    assert "(error: unable to write file " in run["message"]
    assert run["message"].endswith("free on that disk); free space there or point TMPDIR elsewhere")
    assert run["message"] in result.stdout
    untouched(checkout)
