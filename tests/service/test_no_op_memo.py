"""The no-op fast path (bot/unchanged.py): a scheduled check whose inputs are as at the
repository's last no-op check answers `unchanged` without a fetch, a plan or an audit run; a
change in any input (the head commit, the config, a packument, the holds, a runbook, the bot's
version, a base image's digest) brings a full check.

Real PostgreSQL (the memo table and the fleet's packument cache), a real Verdaccio, real git
over HTTP from the GitHub-shaped server, a real OCI registry; each `checker` is one worker
process's pipeline (its own state directory and packument memory).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import git
import pytest
from sqlalchemy import create_engine, text

from bot.audit import AuditStore
from bot.config import Settings
from bot.forges.base import ApiUsage
from bot.forges.github import GitHubForge, GitHubOptions
from bot.lifecycle.records import CommandRecords
from bot.models import RunRequest, RunSummary, Trigger
from bot.pipeline import Pipeline
from bot.runbook import DEFAULT_RUNBOOKS_DIR, Runbook, load_runbooks
from bot.service.distributed.shared import FleetPackumentCache, create_tables
from bot.services import build_services
from tests.conftest import Env, make_project
from tests.support.github_api import RunningApi, start_github_api
from tests.support.oci_registry import start_registry
from tests.support.postgres import Postgres

TOKEN = "ghp_nooptoken"
REPO = "octo/app"
NEWEST = "0.34.1"  # the newest stable sharp of the fixture family: nothing to rotate


@dataclass
class World:
    tmp: Path
    env: Env
    database_url: str
    running: RunningApi
    project: git.Repo
    bare: Path
    workers: int = 0

    def checker(
        self,
        *,
        runbooks: Mapping[str, Runbook] | None = None,
        ttl: float = 3600,
        environ: Mapping[str, str] | None = None,
    ) -> Pipeline:
        """A new worker's pipeline (own state directory, empty packument memory)."""
        self.workers += 1
        state = self.tmp / f"worker{self.workers}"
        settings = Settings(
            github_url=self.running.api.api_url,
            github_token=TOKEN,
            state_dir=state,
            tools_dir=self.env.tools,
            database_url=self.database_url,
            release_notes_url="http://127.0.0.1:9",
        )
        engine = create_engine(self.database_url)
        forge = GitHubForge.from_settings(settings, options=GitHubOptions())
        return Pipeline(
            services=build_services(
                settings,
                environ if environ is not None else self.env.variables(),
                forge=forge,
                packuments=FleetPackumentCache(engine, ttl),
            ),
            audit=AuditStore(self.database_url),
            runbooks=runbooks or load_runbooks(DEFAULT_RUNBOOKS_DIR),
        )

    def commit(self, files: Mapping[str, str], message: str) -> None:
        """Commit `files` to the project and push them to the served repository's main."""
        root = Path(self.project.working_dir)
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(content)
        self.project.git.add("--all")
        self.project.git.commit("-m", message, "--no-verify")
        self.project.git.push(str(self.bare), "main:main")

    def sql(self, statement: str) -> None:
        engine = create_engine(self.database_url)
        with engine.begin() as connection:
            connection.execute(text(statement))
        engine.dispose()


@pytest.fixture
def world(tmp_path: Path, env: Env, postgres: Postgres) -> Iterator[World]:
    database_url = postgres.create_database(f"noop_{uuid.uuid4().hex[:12]}")
    create_tables(create_engine(database_url))
    running = start_github_api(tmp_path / "github")
    running.api.add_token(TOKEN, login="rotation-bot")
    project = make_project(tmp_path / "project", env, sharp=NEWEST)
    bare = tmp_path / "bare" / "app.git"
    git.Repo.clone_from(project.working_dir, bare, bare=True)
    running.api.add_repository(REPO, bare)
    world = World(tmp_path, env, database_url, running, project, bare)
    try:
        yield world
    finally:
        running.stop()


def scheduled(pipeline: Pipeline) -> list[RunSummary]:
    return pipeline.run(RunRequest(REPO, Trigger(kind="schedule", actor="schedule")))


def outcomes(summaries: list[RunSummary]) -> list[str]:
    return sorted(summary.outcome for summary in summaries)


def full_then_unchanged(pipeline: Pipeline) -> list[RunSummary]:
    """A full no-op check, then the same check answered by the memo; the full check's runs."""
    full = scheduled(pipeline)
    assert outcomes(full) == ["nothing-to-do", "nothing-to-do"], [s.message for s in full]
    again = scheduled(pipeline)
    assert outcomes(again) == ["unchanged", "unchanged"], [s.message for s in again]
    return full


def audit_runs(world: World) -> int:
    return len(AuditStore(world.database_url).list_runs(limit=1000))


def test_an_unchanged_repository_costs_one_github_call_no_git_and_no_audit_run(
    world: World,
) -> None:
    full = full_then_unchanged(world.checker())
    runs = audit_runs(world)
    # A new worker process (nothing cached in it: no clone, no packument in memory).
    fresh = world.checker()
    world.running.api.clear_requests()
    answered = scheduled(fresh)
    assert outcomes(answered) == ["unchanged", "unchanged"]
    assert {s.run_id for s in answered} == {s.run_id for s in full}  # the result that stands
    requests = world.running.api.requests
    assert [r.path for r in requests if ".git/" in r.path] == []  # no clone, no fetch
    (head,) = [r for r in requests if ".git/" not in r.path]  # one API call: the branch head
    assert (head.method, head.path.endswith("/repos/octo/app/commits/main")) == ("GET", True)
    # the commit id alone, on condition that it moved: unmoved, a 304 that costs no rate limit
    assert head.headers["accept"] == "application/vnd.github.sha"
    assert head.headers["if-none-match"] == f'"{world.project.head.commit.hexsha}"'
    assert head.status == 304
    assert fresh.forge.api_usage() == ApiUsage(requests=1, not_modified=1)
    assert not (fresh.services.settings.state_dir / "repositories").exists()  # never cloned
    assert audit_runs(world) == runs  # nothing written to the audit trail
    # A person's command is never answered from the memo.
    chat = fresh.run(RunRequest(REPO, Trigger(kind="chat", actor="alice")))
    assert outcomes(chat) == ["nothing-to-do", "nothing-to-do"]


def test_a_new_commit_brings_a_full_check(world: World) -> None:
    pipeline = world.checker()
    full_then_unchanged(pipeline)
    world.commit({"README.md": "# app\n"}, "docs")
    assert outcomes(scheduled(pipeline)) == ["nothing-to-do", "nothing-to-do"]
    assert outcomes(scheduled(pipeline)) == ["unchanged", "unchanged"]


def test_a_changed_config_brings_a_full_check_with_its_new_answer(world: World) -> None:
    pipeline = world.checker()
    full_then_unchanged(pipeline)
    config = "version: 1\nrunbooks:\n  sharp:\n    enabled: false\n"
    world.commit({".github/rotation-bot.yml": config}, "stop rotating sharp")
    (only,) = scheduled(pipeline)
    assert (only.runbook, only.outcome) == ("base-image", "nothing-to-do")


def test_a_packument_that_changed_brings_a_full_check(world: World) -> None:
    full_then_unchanged(world.checker())
    # Another worker refreshed the fleet's copy of sharp's packument: it now says more.
    world.sql(
        "UPDATE rotation_bot_packuments SET body = "
        "jsonb_set(body::jsonb, '{description}', '\"refreshed\"')::text"
    )
    assert outcomes(scheduled(world.checker())) == ["nothing-to-do", "nothing-to-do"]


def test_a_stale_packument_brings_a_full_check_that_refreshes_it(world: World) -> None:
    full_then_unchanged(world.checker())
    world.sql("UPDATE rotation_bot_packuments SET fetched_at = fetched_at - 7200")
    pipeline = world.checker()
    assert outcomes(scheduled(pipeline)) == ["nothing-to-do", "nothing-to-do"]
    assert outcomes(scheduled(pipeline)) == ["unchanged", "unchanged"]


def test_a_hold_brings_a_full_check(world: World) -> None:
    pipeline = world.checker()
    full_then_unchanged(pipeline)
    CommandRecords(AuditStore(world.database_url)).record_hold(
        REPO, "sharp", "ignore", "0.35", by="alice", url="https://example.test/c/1"
    )
    assert outcomes(scheduled(pipeline)) == ["nothing-to-do", "nothing-to-do"]


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(
            lambda books: {**books, "sharp": books["sharp"].model_copy(update={"title": "New"})},
            id="runbook",
        ),
    ],
)
def test_a_changed_runbook_brings_a_full_check(
    world: World, change: Callable[[dict[str, Runbook]], dict[str, Runbook]]
) -> None:
    full_then_unchanged(world.checker())
    changed = change(load_runbooks(DEFAULT_RUNBOOKS_DIR))
    assert outcomes(scheduled(world.checker(runbooks=changed))) == [
        "nothing-to-do",
        "nothing-to-do",
    ]


def test_a_new_bot_version_brings_a_full_check(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    full_then_unchanged(world.checker())
    # the installed distribution's version is what an upgrade changes
    monkeypatch.setattr("bot.pipeline.bot_version", lambda: "999.0.0")
    assert outcomes(scheduled(world.checker())) == ["nothing-to-do", "nothing-to-do"]


def test_another_registry_configured_by_the_operator_brings_a_full_check(world: World) -> None:
    full_then_unchanged(world.checker())
    variables = world.env.variables()
    npmrc = Path(variables["NPM_CONFIG_USERCONFIG"])
    changed = world.tmp / "changed.npmrc"
    changed.write_text(npmrc.read_text() + "@other:registry=http://127.0.0.1:9/\n")
    environ = {**variables, "NPM_CONFIG_USERCONFIG": str(changed)}
    assert outcomes(scheduled(world.checker(environ=environ))) == [
        "nothing-to-do",
        "nothing-to-do",
    ]


def test_a_release_too_young_for_now_is_never_remembered(world: World) -> None:
    config = "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 36500d\n"
    world.commit({".github/rotation-bot.yml": config}, "wait a century")
    # the project is at the newest release: go back one, so a newer one is waiting for its age
    older = make_project(world.tmp / "older", world.env, sharp="0.34.0", config=config)
    older.git.push(str(world.bare), "+main:main")
    pipeline = world.checker()
    first = scheduled(pipeline)
    assert "nothing-to-do" in outcomes(first)
    assert any("a later cycle picks it up" in s.message for s in first), [s.message for s in first]
    assert "unchanged" not in outcomes(scheduled(pipeline))


def test_a_base_image_tag_that_moved_brings_a_full_check(world: World, tmp_path: Path) -> None:
    oci = start_registry(tmp_path / "oci")
    try:
        pinned = oci.push_image("e2e/base", "1", "first build")
        world.commit({"Dockerfile": f"FROM {oci.host}/e2e/base:1@{pinned}\n"}, "container")
        pipeline = world.checker()
        full_then_unchanged(pipeline)
        oci.push_image("e2e/base", "1", "rebuilt")  # the tag now names another digest
        checked = {s.runbook: s.outcome for s in scheduled(pipeline)}
        assert checked["base-image"] != "unchanged", checked
    finally:
        oci.stop()
