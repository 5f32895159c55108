"""The base-image runbook end to end: a real registry, real git repositories, the real CLI."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, cast

import git
import pytest
from click.testing import CliRunner, Result

from bot.audit import AuditStore
from bot.cli import main
from bot.config import Settings
from bot.services import build_services
from bot.sources.oci.client import OciClient
from tests.support.git_fixture import commit_directory
from tests.support.oci_registry import (
    BrokenRegistry,
    Registry,
    broken_registry_fixture,
    docker_config,
    registry_fixture,
)
from tests.support.processes import free_port

registry = registry_fixture("token")
broken = broken_registry_fixture()

BRANCH = "rotation-bot/base-image"
OLD_DATE = "2024-01-01T00:00:00Z"
NEWER_DATE = "2024-02-01T00:00:00Z"
CONFIG = "version: 1\nrunbooks:\n  base-image:\n    minimum-release-age: 1d\n"


class Bot:
    """Runs the real `rotation-bot` command with an isolated home, state and docker config."""

    def __init__(self, root: Path, registry: Registry) -> None:
        self.root = root
        self.docker = docker_config(
            root / "docker", {registry.host: ("registry-user", "registry-password-1234")}
        )

    def variables(self) -> dict[str, str]:
        return {
            "PATH": os.environ["PATH"],
            "HOME": str(self.root / "home"),
            "DOCKER_CONFIG": str(self.docker),
            "ROTATION_BOT_STATE_DIR": str(self.root / "state"),
            "ROTATION_BOT_RELEASE_NOTES_URL": "http://127.0.0.1:9",
            "USER": "tester",
        }

    def __call__(self, *args: str) -> Result:
        return CliRunner().invoke(main, list(args), env=self.variables(), catch_exceptions=False)

    def json(self, *args: str) -> tuple[int, Any]:
        result = self(*args, "--json")
        return result.exit_code, json.loads(result.stdout) if result.stdout.strip() else None

    def proposals(self, repo: Path) -> list[dict[str, Any]]:
        store = AuditStore(f"sqlite:///{self.root / 'state' / 'audit.sqlite3'}")
        return store.open_proposals(str(repo.resolve()), "base-image")


@pytest.fixture
def bot(tmp_path: Path, registry: Registry) -> Bot:
    return Bot(tmp_path, registry)


def make_repo(path: Path, files: Mapping[str, str], config: str | None = CONFIG) -> git.Repo:
    path.mkdir(parents=True)
    if config is not None:
        files = {**files, ".github/rotation-bot.yml": config}
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(text.encode())
    return commit_directory(path)


def branches(repo: git.Repo) -> dict[str, str]:
    return {head.name: head.commit.hexsha for head in repo.heads}


def at_branch(repo: git.Repo, path: str, branch: str = BRANCH) -> str:
    data: bytes = (repo.commit(branch).tree / path).data_stream.read()
    return data.decode()


def test_the_composition_root_wires_the_oci_client() -> None:
    services = build_services(Settings(), {}, forge=cast(Any, None))
    assert isinstance(services.oci, OciClient), (
        "bot.services.build_services must set Services.oci = make_oci_client(settings, environ, "
        "http=client)"
    )


def test_a_moved_tag_is_re_pinned_on_one_branch_and_kept_up_to_date(
    tmp_path: Path, bot: Bot, registry: Registry
) -> None:
    host = registry.host
    node_old = registry.push_index("e2e/node", "20", "node one", created=OLD_DATE)
    node_new = registry.push_index("e2e/node", "20", "node two", created=NEWER_DATE)
    tools = registry.push_image("e2e/tools", "1", "tools", created=OLD_DATE)
    dockerfile = (
        "# syntax=docker/dockerfile:1\n"
        f"ARG BASE={host}/e2e/node:20@{node_old}\n"
        "FROM --platform=$BUILDPLATFORM ${BASE} AS build\n"
        "RUN echo build \\\n"
        "  && echo done\n"
        f"FROM {host}/e2e/tools:1@{tools}\n"
        "COPY --from=build /app /app\n"
    )
    path = tmp_path / "app"
    repo = make_repo(path, {"Dockerfile": dockerfile})
    main_head = repo.head.commit.hexsha

    code, plans = bot.json("plan", "--repo", str(path), "--runbook", "base-image")
    assert code == 0
    (plan,) = plans
    (rotation,) = plan["rotations"]
    assert rotation["kind"] == "digest" and rotation["branch"] == BRANCH
    assert [(d["line"], d["previous_digest"], d["new_digest"]) for d in rotation["digests"]] == [
        (2, node_old, node_new)
    ]
    assert list(branches(repo)) == ["main"]

    result = bot("run", "--repo", str(path), "--runbook", "base-image")

    assert result.exit_code == 0, result.output
    assert set(branches(repo)) == {"main", BRANCH}
    assert at_branch(repo, "Dockerfile") == dockerfile.replace(node_old, node_new)
    # the user's checkout is untouched
    assert repo.head.commit.hexsha == main_head
    assert (path / "Dockerfile").read_text() == dockerfile
    (proposal,) = bot.proposals(path)
    body = proposal["body"]
    assert f"{host}/e2e/node:20" in body
    assert f"`{node_old}` → `{node_new}`" in body
    assert "2024-01-01T00:00:00Z → 2024-02-01T00:00:00Z" in body

    # nothing new: nothing changes
    first_branch = branches(repo)[BRANCH]
    code, summaries = bot.json("run", "--repo", str(path), "--runbook", "base-image")
    assert code == 0 and summaries[0]["outcome"] == "up-to-date"
    assert branches(repo)[BRANCH] == first_branch

    # the tag moves again: the same branch and proposal are updated
    node_newest = registry.push_index("e2e/node", "20", "node three", created=NEWER_DATE)
    code, summaries = bot.json("run", "--repo", str(path), "--runbook", "base-image")
    assert code == 0 and summaries[0]["outcome"] == "proposed", summaries
    assert set(branches(repo)) == {"main", BRANCH}
    assert branches(repo)[BRANCH] != first_branch
    assert at_branch(repo, "Dockerfile") == dockerfile.replace(node_old, node_newest)
    (proposal,) = bot.proposals(path)
    assert node_newest in proposal["body"]


def test_an_unchanged_tag_is_a_no_op(tmp_path: Path, bot: Bot, registry: Registry) -> None:
    digest = registry.push_image("e2e/stable", "1", "stable", created=OLD_DATE)
    path = tmp_path / "app"
    repo = make_repo(
        path, {"deploy/web.Dockerfile": f"FROM {registry.host}/e2e/stable:1@{digest}\n"}
    )

    code, summaries = bot.json("run", "--repo", str(path), "--runbook", "base-image")

    assert code == 0
    assert summaries[0]["outcome"] == "nothing-to-do"
    assert list(branches(repo)) == ["main"] and bot.proposals(path) == []


def test_one_unreachable_registry_skips_only_its_image(
    tmp_path: Path, bot: Bot, registry: Registry
) -> None:
    old = registry.push_image("e2e/reachable", "1", "reachable one", created=OLD_DATE)
    new = registry.push_image("e2e/reachable", "1", "reachable two", created=OLD_DATE)
    pinned = "sha256:" + "d" * 64
    nobody = f"127.0.0.1:{free_port()}"
    dockerfile = (
        f"FROM {nobody}/team/app:1@{pinned} AS first\nFROM {registry.host}/e2e/reachable:1@{old}\n"
    )
    path = tmp_path / "app"
    repo = make_repo(path, {"Dockerfile": dockerfile})

    code, plans = bot.json("plan", "--repo", str(path), "--runbook", "base-image")
    assert code == 0
    (skipped,) = plans[0]["skipped"]
    assert skipped["subject"].startswith("Dockerfile:1") and "unavailable" in skipped["reason"]

    result = bot("run", "--repo", str(path), "--runbook", "base-image")

    assert result.exit_code == 0, result.output
    assert at_branch(repo, "Dockerfile") == dockerfile.replace(old, new)


def test_a_missing_tag_and_a_malformed_manifest_write_nothing(
    tmp_path: Path, bot: Bot, registry: Registry, broken: BrokenRegistry
) -> None:
    pinned = "sha256:" + "f" * 64
    path = tmp_path / "app"
    repo = make_repo(
        path,
        {
            "Dockerfile": f"FROM {registry.host}/e2e/missing:1@{pinned}\n",
            "Dockerfile.broken": f"FROM {broken.host}/acme/app:bad-digest@{pinned}\n",
        },
    )

    code, summaries = bot.json("run", "--repo", str(path), "--runbook", "base-image")

    assert code == 0
    (summary,) = summaries
    assert summary["outcome"] == "nothing-to-do"
    assert "tag not found" in summary["message"]
    assert "invalid data" in summary["message"] and "etc/passwd" in summary["message"]
    assert list(branches(repo)) == ["main"]


def test_a_young_digest_waits_for_the_minimum_age(
    tmp_path: Path, bot: Bot, registry: Registry
) -> None:
    old = registry.push_image("e2e/young", "1", "young one", created=OLD_DATE)
    registry.push_image("e2e/young", "1", "young two", created="2999-01-01T00:00:00Z")
    path = tmp_path / "app"
    repo = make_repo(path, {"Dockerfile": f"FROM {registry.host}/e2e/young:1@{old}\n"})

    code, summaries = bot.json("run", "--repo", str(path), "--runbook", "base-image")

    assert code == 0 and summaries[0]["outcome"] == "nothing-to-do"
    assert "younger than the minimum age" in summaries[0]["message"]
    assert list(branches(repo)) == ["main"]
