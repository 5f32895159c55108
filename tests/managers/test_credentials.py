"""The operator's registry token reaches pnpm, Yarn 1 and Yarn Berry (through a 0600 config
outside the worktree) and nowhere else: a registry that refuses anonymous reads, a real rotation
per manager, and the token searched for in the branch, the audit trail and the proposal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.conftest import DEFAULT_CONFIG, Env, publish_releases
from tests.managers.rotation import NEWER, branches, run_bot
from tests.support.git_fixture import commit_directory
from tests.support.layouts import lock_with
from tests.support.verdaccio import Verdaccio, publish_tools, running_verdaccio
from tests.test_sharp_runbook import audit


@pytest.fixture
def private_only_registry(tmp_path: Path) -> Iterator[Verdaccio]:
    """A Verdaccio that serves nothing without the token."""
    with running_verdaccio(tmp_path / "verdaccio", access="$authenticated") as server:
        publish_tools(server)
        yield server


MANAGERS = {
    "pnpm": ("10.32.1", "pnpm-lock.yaml", {}),
    "yarn-classic": ("1.22.22", "yarn.lock", {}),
    "yarn-berry": (
        "4.18.0",
        "yarn.lock",
        {
            "packageManager": "yarn@4.18.0",
            ".yarnrc.yml": "nodeLinker: node-modules\nnpmMinimalAgeGate: 0\n",
        },
    ),
}


@pytest.mark.parametrize("manager", list(MANAGERS))
def test_the_registry_token_reaches_the_manager_and_nothing_else(
    tmp_path: Path, private_only_registry: Verdaccio, tools_dir: Path, manager: str
) -> None:
    registry = private_only_registry
    anonymous = httpx.get(f"{registry.url}sharp", timeout=10)
    assert anonymous.status_code in (401, 403)
    env = Env(tmp_path, registry.url, registry.token, tools=tools_dir)
    publish_releases(registry, ["0.33.4"])
    version, lockfile, extra = MANAGERS[manager]
    path = tmp_path / "app"
    path.mkdir()
    manifest = {"name": "app", "version": "1.0.0", "private": True}
    manifest |= {"dependencies": {"sharp": "^0.33.4"}}
    if "packageManager" in extra:
        manifest["packageManager"] = extra["packageManager"]
    (path / "package.json").write_text(json.dumps(manifest, indent=2) + "\n")
    for name, text in extra.items():
        if name.startswith("."):
            (path / name).write_text(text)
    (path / ".github").mkdir()
    (path / ".github" / "rotation-bot.yml").write_text(DEFAULT_CONFIG)
    lock_with(manager, version, path, registry, tools_dir)
    repo = commit_directory(path)
    publish_releases(registry, NEWER)

    outcome = run_bot(env, path, "--target", "0.33.6")

    assert outcome.code == 0, [item["message"] for item in outcome.summaries]
    assert set(branches(repo)) == {"main", "rotation-bot/sharp-0.33.6"}
    assert lockfile in repo.git.show("--name-only", "rotation-bot/sharp-0.33.6")
    assert registry.token not in repo.git.grep(
        "-I", "-e", registry.token, "rotation-bot/sharp-0.33.6", with_exceptions=False
    )
    records = json.dumps(list(audit(env).records()), default=str)
    assert registry.token not in records
    assert registry.token not in outcome.summary("0.33.6")["proposal"]["body"]
