"""The dependency dashboard issue: the GitHub forge keeps exactly one, updated in place, against
the GitHub-shaped local server; the pipeline renders it after a real run (`dashboard: true`)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.audit import AuditStore
from bot.forges.github import DASHBOARD_LABEL, DASHBOARD_MARKER, GitHubForge, GitHubOptions
from bot.forges.local import DASHBOARD_BRANCH
from tests.conftest import DEFAULT_CONFIG, Env, bot, make_project
from tests.service.conftest import Fleet
from tests.support.github_api import GitHubApi, make_git_repository, start_github_api

REPO = "octo/app"
TOKEN = "ghp_dashboardTOKEN0123456789abcdef"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[GitHubApi]:
    running = start_github_api(tmp_path / "api")
    try:
        remote = make_git_repository(tmp_path / "git", {"README.md": "hi\n"})
        running.api.add_repository(REPO, remote.bare)
        running.api.add_token(TOKEN, login="rotation-bot")
        yield running.api
    finally:
        running.stop()


def forge_for(api: GitHubApi) -> GitHubForge:
    return GitHubForge(
        api.api_url,
        token=TOKEN,
        options=GitHubOptions(timeout=5, seconds_between_requests=0, seconds_between_writes=0),
    )


def writes(api: GitHubApi) -> list[str]:
    return [f"{r.method} {r.path}" for r in api.requests if r.method != "GET"]


def test_one_issue_is_opened_then_updated_in_place_and_unchanged_costs_no_write(
    api: GitHubApi,
) -> None:
    forge = forge_for(api)
    other = api.add_issue(REPO, title="not ours", user="alice", labels=(DASHBOARD_LABEL,))

    url = forge.ensure_dashboard_issue(REPO, "## rotation-bot dashboard\n\n- none\n", run_id="r1")

    (issue,) = [item for item in api.issues(REPO) if item.number != other]
    assert url.endswith(f"/issues/{issue.number}")
    assert issue.labels == [DASHBOARD_LABEL] and issue.title == "rotation-bot dashboard"
    assert issue.body is not None and issue.body.rstrip().endswith(DASHBOARD_MARKER)
    assert writes(api) == [f"POST /repos/{REPO}/issues"]

    api.clear_requests()
    for _ in range(2):
        assert (
            forge.ensure_dashboard_issue(REPO, "## rotation-bot dashboard\n\n- none\n", run_id="r1")
            == url
        )
    assert writes(api) == [], "an unchanged dashboard is not written"
    # one list request each; once the listing is cached, a quiet cycle is a free 304
    assert [r.status for r in api.requests] == [200, 304]

    forge.ensure_dashboard_issue(
        REPO, "## rotation-bot dashboard\n\n- sharp `0.34.1`\n", run_id="r1"
    )
    assert writes(api) == [f"PATCH /repos/{REPO}/issues/{issue.number}"]
    assert "0.34.1" in (api.repository(REPO).items[issue.number].body or "")
    assert api.repository(REPO).items[other].body is None, "a look-alike is left alone"
    assert len(api.issues(REPO)) == 2


def test_a_closed_dashboard_issue_is_reopened_not_duplicated(api: GitHubApi) -> None:
    forge = forge_for(api)
    url = forge.ensure_dashboard_issue(REPO, "body\n", run_id="r1")
    (issue,) = api.issues(REPO)
    api.repository(REPO).items[issue.number].state = "closed"  # a maintainer closed it

    assert forge.ensure_dashboard_issue(REPO, "body\n", run_id="r1") == url

    assert [(item.number, item.state) for item in api.issues(REPO)] == [(issue.number, "open")]


def test_a_run_with_dashboard_true_keeps_the_local_dashboard_current(
    tmp_path: Path, env: Env
) -> None:
    path = tmp_path / "app"
    make_project(path, env, config=DEFAULT_CONFIG + "dashboard: true\n")
    store = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}")

    assert bot(env, "run", "--repo", str(path), "--runbook", "sharp").exit_code == 0

    stored = store.find_proposal(str(path), DASHBOARD_BRANCH)
    assert stored is not None and stored["state"] == "dashboard"
    body = stored["body"]
    opened = body.split("### Open rotations")[1].split("###")[0]
    assert "sharp `0.33.6`" in opened
    majors = body.split("### Majors awaiting approval")[1].split("###")[0]
    assert "sharp `0.34.1`" in majors
    assert "`/rotate sharp`" in body

    assert bot(env, "run", "--repo", str(path), "--runbook", "sharp").exit_code == 0  # up to date
    again = store.find_proposal(str(path), DASHBOARD_BRANCH)
    assert again is not None and again["updated_at"] == stored["updated_at"], "no rewrite"


def test_without_the_opt_in_no_dashboard_is_kept(fleet: Fleet) -> None:
    store = fleet.store()  # the fleet's repositories ran without `dashboard: true`
    assert store.find_proposal(fleet.web, DASHBOARD_BRANCH) is None
    assert store.find_proposal(fleet.api, DASHBOARD_BRANCH) is None
    assert store.find_proposal(fleet.web, "rotation-bot/sharp-0.34.1") is not None, "it ran"
