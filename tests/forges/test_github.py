"""The GitHub forge against a local GitHub-shaped API and real git pushes over smart HTTP.

Each test drives the real PyGithub client (`base_url` = the local server's `/api/v3`, the
GitHub Enterprise shape), pushes real commits with `bot.workspace.Workspace` through
`git http-backend` behind GitHub's `x-access-token` check, and asserts on the server's state and
recorded requests.
"""

from __future__ import annotations

import logging
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.audit import AuditStore
from bot.errors import ConfigError, InvalidRemoteData, RepositoryError, ServiceUnavailable
from bot.forges.base import Notice
from bot.forges.github import INCIDENT_LABEL, GitHubForge, GitHubOptions
from bot.models import Proposal
from bot.workspace import Workspace
from tests.conftest import Env, bot_json, make_project
from tests.support.github_api import (
    SHA_MEDIA_TYPE,
    Fault,
    GitHubApi,
    GitRepository,
    PlainText,
    make_git_repository,
    start_github_api,
)

REPO = "octo/app"
TOKEN = "ghp_CANARYtoken0123456789abcdefCANARY"
PREFIX = "rotation-bot/sharp-0.33."


@dataclass
class Rig:
    """A served repository, a forge pointed at the server, and the sleeps it asked for."""

    api: GitHubApi
    remote: GitRepository
    forge: GitHubForge
    cache: Path
    sleeps: list[float] = field(default_factory=list)

    def workspace(self) -> Workspace:
        """The repository as the pipeline opens it (clone URL and push auth from the forge)."""
        return Workspace.open_remote(
            self.forge.clone_url(REPO),
            cache_dir=self.cache,
            name=REPO,
            auth=self.forge.push_auth(REPO),
        )

    def push_rotation(self, version: str, **fields: object) -> Proposal:
        """Commit a rotation in a worktree, push its branch; the proposal the pipeline builds."""
        workspace = self.workspace()
        branch = f"rotation-bot/sharp-{version}"
        with workspace.worktree(f"run-{version}") as worktree:
            (worktree / "package.json").write_text(f'{{"overrides": {{"sharp": "{version}"}}}}\n')
            commit = workspace.commit(worktree, f"Rotate sharp to {version}", ["package.json"])
        workspace.publish_branch(branch, commit, expected=workspace.branch_commit(branch))
        proposal = Proposal(
            branch=branch,
            title=f"Rotate sharp 0.33.4 → {version}",
            body=f"<!-- rotation-bot:sharp:{version} -->\n## Rotate sharp\n\nbase "
            f"{workspace.base_commit[:7]}\n",
            base_branch="main",
            base_commit=workspace.base_commit,
            head_commit=commit,
            runbook="sharp",
            new_version=version,
            run_id=f"run-{version}",
        )
        return replace(proposal, **fields)  # type: ignore[arg-type]

    def writes(self) -> list[str]:
        """`METHOD path` of every API write so far."""
        return [
            f"{r.method} {r.path}"
            for r in self.api.requests
            if r.method != "GET"
            and not r.path.endswith((".git/git-receive-pack", ".git/git-upload-pack"))
        ]


def _options(sleeps: list[float], **overrides: object) -> GitHubOptions:
    values: dict[str, object] = {
        "timeout": 1,
        "backoff": 0.5,
        "secondary_wait": 3.0,
        "seconds_between_requests": 0,
        "seconds_between_writes": 0,
        "sleep": sleeps.append,
        **overrides,
    }
    return GitHubOptions(**values)  # type: ignore[arg-type]


@pytest.fixture
def api(tmp_path: Path) -> Iterator[GitHubApi]:
    running = start_github_api(tmp_path / "api")
    try:
        yield running.api
    finally:
        running.stop()


@pytest.fixture
def rig(api: GitHubApi, tmp_path: Path) -> Rig:
    remote = make_git_repository(tmp_path / "git", {"package.json": '{"overrides": {}}\n'})
    api.add_repository(REPO, remote.bare)
    api.add_token(TOKEN, login="rotation-bot")
    api.set_permission(REPO, "alice", "write")
    sleeps: list[float] = []
    forge = GitHubForge(api.api_url, token=TOKEN, options=_options(sleeps))
    return Rig(api, remote, forge, tmp_path / "cache", sleeps)


def test_first_pull_request_carries_labels_reviewers_assignees_and_draft(rig: Rig) -> None:
    proposal = rig.push_rotation(
        "0.33.5",
        labels=("dependencies", "security"),
        reviewers=("alice",),
        assignees=("alice",),
        draft=True,
    )

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    [pull] = rig.api.pulls(REPO)
    assert published.created and not published.updated
    assert published.url == f"{rig.api.url}/{REPO}/pull/{pull.number}"
    assert (pull.head, pull.base, pull.title) == (proposal.branch, "main", proposal.title)
    assert pull.body is not None and pull.body.startswith(proposal.body.rstrip())
    assert rig.remote.branches()[proposal.branch] == proposal.head_commit
    assert pull.labels == ["dependencies", "security"]
    assert pull.reviewers == ["alice"] and pull.assignees == ["alice"]
    assert pull.draft is True
    found = rig.forge.find_proposal(REPO, proposal.branch)
    assert found is not None
    assert (found.url, found.branch, found.head_commit, found.base_commit, found.new_version) == (
        published.url,
        proposal.branch,
        proposal.head_commit,
        proposal.base_commit,
        "0.33.5",
    )
    assert found.body == proposal.body


def test_rerun_opens_no_second_pull_request_and_writes_nothing(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5", labels=("dependencies",))
    first = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)
    writes = rig.writes()

    again = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)
    plain = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=None)

    assert len(rig.api.pulls(REPO)) == 1
    assert again.url == plain.url == first.url
    assert not again.created and not again.updated and not plain.updated
    assert rig.writes() == writes  # byte-identical body: nothing to write


def test_idle_cycle_costs_one_conditional_request(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)
    rig.forge.find_proposal(REPO, proposal.branch)
    remaining = rig.api.tokens[TOKEN].remaining
    before = rig.forge.api_usage()

    found = rig.forge.find_proposal(REPO, proposal.branch)

    usage = rig.forge.api_usage() - before
    assert found is not None and found.head_commit == proposal.head_commit
    assert (usage.requests, usage.not_modified) == (1, 1)
    assert rig.api.requests[-1].status == 304
    assert rig.api.tokens[TOKEN].remaining == remaining  # a 304 is free on GitHub


def test_moved_target_updates_the_open_pull_request(rig: Rig) -> None:
    first = rig.push_rotation("0.33.5")
    published = rig.forge.ensure_proposal(REPO, first, supersedes_prefix=PREFIX)
    rig.remote.commit({"README.md": "moved on\n"}, "Unrelated change on main")

    second = rig.push_rotation("0.33.5")
    updated = rig.forge.ensure_proposal(REPO, second, supersedes_prefix=PREFIX)

    [pull] = rig.api.pulls(REPO)
    assert second.base_commit != first.base_commit
    assert updated.url == published.url and updated.updated and not updated.created
    assert pull.body is not None and second.body.rstrip() in pull.body
    assert rig.remote.branches()[second.branch] == second.head_commit
    found = rig.forge.find_proposal(REPO, second.branch)
    assert found is not None and found.base_commit == second.base_commit
    assert rig.writes().count(f"PATCH /repos/{REPO}/pulls/{pull.number}") == 1


def test_newer_target_closes_the_superseded_pull_request_with_a_link(rig: Rig) -> None:
    old = rig.forge.ensure_proposal(REPO, rig.push_rotation("0.33.5"), supersedes_prefix=PREFIX)
    other_line = rig.push_rotation("0.34.0")
    rig.forge.ensure_proposal(REPO, other_line, supersedes_prefix="rotation-bot/sharp-0.34.")

    new = rig.forge.ensure_proposal(REPO, rig.push_rotation("0.33.6"), supersedes_prefix=PREFIX)

    pulls = {pull.head: pull for pull in rig.api.pulls(REPO)}
    assert new.created and new.superseded == ("rotation-bot/sharp-0.33.5",)
    assert pulls["rotation-bot/sharp-0.33.5"].state == "closed"
    assert pulls["rotation-bot/sharp-0.33.6"].state == "open"
    assert pulls["rotation-bot/sharp-0.34.0"].state == "open"
    [comment] = rig.api.comments_on(REPO, pulls["rotation-bot/sharp-0.33.5"].number)
    assert new.url in comment.body and "Superseded" in comment.body
    assert old.url != new.url


def test_create_retried_after_a_5xx_that_created_it_opens_one(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    rig.api.inject(Fault.error_after("POST", f"/repos/{REPO}/pulls", status=502))

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    [pull] = rig.api.pulls(REPO)
    assert published.created and published.url.endswith(f"/pull/{pull.number}")
    assert rig.writes().count(f"POST /repos/{REPO}/pulls") == 1
    after_post = rig.api.requests_matching("GET", f"/repos/{REPO}/pulls")[-1]
    assert after_post.query.get("head") == f"octo:{proposal.branch}"  # looked before retrying


def test_create_retried_after_a_5xx_that_did_not_create_it(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    rig.api.inject(Fault.respond("POST", f"/repos/{REPO}/pulls", 503, {"message": "busy"}))

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=None)

    assert published.created and len(rig.api.pulls(REPO)) == 1
    assert rig.writes().count(f"POST /repos/{REPO}/pulls") == 2
    assert rig.sleeps == [0.5]


def test_create_that_timed_out_after_creating_opens_one(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    rig.api.inject(Fault.timeout("POST", f"/repos/{REPO}/pulls", seconds=1.5, perform=True))

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    assert published.created and len(rig.api.pulls(REPO)) == 1
    assert rig.writes().count(f"POST /repos/{REPO}/pulls") == 1


def test_already_exists_422_finds_the_pull_request_opened_meanwhile(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    elsewhere = GitHubForge(rig.api.api_url, token=TOKEN, options=_options([]))
    opened = elsewhere.ensure_proposal(REPO, proposal, supersedes_prefix=None)
    # This forge's lookup still sees the list from before the other instance's write.
    rig.api.inject(Fault.respond("GET", f"/repos/{REPO}/pulls", 200, []))

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=None)

    assert published.url == opened.url and not published.created
    assert len(rig.api.pulls(REPO)) == 1
    [post] = rig.api.requests_matching("POST", f"/repos/{REPO}/pulls")[-1:]
    assert post.status == 422


def test_crash_between_push_and_pull_request_recovers_with_one(rig: Rig) -> None:
    crashed = rig.push_rotation("0.33.5")  # pushed, then the process died: no pull request
    assert rig.forge.find_proposal(REPO, crashed.branch) is None

    proposal = rig.push_rotation("0.33.5")
    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)
    again = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    [pull] = rig.api.pulls(REPO)
    assert published.created and not again.created and again.url == published.url
    assert pull.head == proposal.branch
    assert [b for b in rig.remote.branches() if b.startswith("rotation-bot/")] == [proposal.branch]
    assert rig.remote.branches()[proposal.branch] == proposal.head_commit


def test_secondary_rate_limit_waits_retry_after_then_succeeds(rig: Rig) -> None:
    proposal = rig.push_rotation("0.33.5")
    rig.api.inject(Fault.secondary_rate_limit("GET", f"/repos/{REPO}/pulls", retry_after=7))
    rig.api.inject(Fault.secondary_rate_limit("POST", f"/repos/{REPO}/pulls", retry_after=2))

    published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    assert published.created and len(rig.api.pulls(REPO)) == 1
    assert rig.sleeps == [7.0, 2.0]
    statuses = [r.status for r in rig.api.requests_matching("POST", f"/repos/{REPO}/pulls")]
    assert statuses == [403, 201]


def test_secondary_rate_limit_longer_than_the_cap_is_unavailable(api: GitHubApi, rig: Rig) -> None:
    forge = GitHubForge(api.api_url, token=TOKEN, options=_options([], max_retry_after=5))
    api.inject(Fault.secondary_rate_limit("GET", f"/repos/{REPO}/pulls", retry_after=600))

    with pytest.raises(ServiceUnavailable, match="rate limit"):
        forge.find_proposal(REPO, "rotation-bot/sharp-0.33.5")


def test_incident_is_opened_once_and_updated_on_repeat(rig: Rig) -> None:
    incident = Notice(
        "incident",
        runbook="sharp",
        target="0.33.5",
        title="rotation-bot: sharp 0.33.5 failed verify-signatures",
        body="first failure\n",
        run_id="run-1",
    )

    url = rig.forge.ensure_notice(REPO, incident)
    repeat = rig.forge.ensure_notice(REPO, replace(incident, body="second failure\n"))
    writes = rig.writes()
    same = rig.forge.ensure_notice(REPO, replace(incident, body="second failure\n"))
    other = rig.forge.ensure_notice(REPO, replace(incident, target="0.33.6"))

    issues = rig.api.issues(REPO)
    assert url == repeat == same and other != url
    assert len(issues) == 2
    assert all(issue.labels == [INCIDENT_LABEL] for issue in issues)
    first = next(issue for issue in issues if str(url).endswith(f"/issues/{issue.number}"))
    assert first.body is not None and first.body.startswith("second failure")
    assert rig.writes()[len(writes) :] == [f"POST /repos/{REPO}/issues"]  # only the 2nd target


def test_incident_create_retried_after_5xx_opens_one(rig: Rig) -> None:
    incident = Notice(
        "incident", runbook="sharp", target="0.33.5", title="sharp failed", body="x\n"
    )
    rig.api.inject(Fault.error_after("POST", f"/repos/{REPO}/issues", status=500))

    url = rig.forge.ensure_notice(REPO, incident)

    assert len(rig.api.issues(REPO)) == 1 and url is not None


def test_reviewer_github_refuses_is_a_warning_not_a_lost_pull_request(
    rig: Rig, caplog: pytest.LogCaptureFixture
) -> None:
    proposal = rig.push_rotation("0.33.5", reviewers=("mallory",), labels=("dependencies",))

    with caplog.at_level(logging.WARNING, logger="bot.forges.github"):
        published = rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    [pull] = rig.api.pulls(REPO)
    assert published.created and pull.labels == ["dependencies"] and pull.reviewers == []
    assert any(getattr(record, "field", None) == "reviewers" for record in caplog.records)


def _app_key() -> tuple[str, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def test_github_app_installation_token_flow(
    api: GitHubApi, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="github.Requester")
    remote = make_git_repository(tmp_path / "git", {"package.json": "{}\n"})
    api.add_repository(REPO, remote.bare)
    api.add_repository("elsewhere/lib", remote.bare)
    private, public = _app_key()
    api.add_app("4242", public)
    api.add_installation("4242", "octo", (REPO,))
    api.token_lifetime = api.token_lifetime.__class__(seconds=5)  # below PyGithub's 20 s margin
    forge = GitHubForge(api.api_url, app_id="4242", app_key=private, options=_options([]))
    rig = Rig(api, remote, forge, tmp_path / "cache")

    proposal = rig.push_rotation("0.33.5")
    published = forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)

    [pull] = api.pulls(REPO)
    assert published.created and pull.user == "rotation-bot[bot]"
    assert remote.branches()[proposal.branch] == proposal.head_commit
    [listing] = api.requests_matching("GET", "/app/installations")
    assert listing.headers["authorization"].startswith("Bearer ey")  # a JWT the server verified
    issued = api.requests_matching("POST", "/app/installations/*")
    assert len(issued) >= 2 and all(r.status == 201 for r in issued)  # refreshed when expiring
    assert forge.list_repositories() == (REPO,)
    with pytest.raises(RepositoryError, match="not installed on elsewhere"):
        forge.clone_url("elsewhere/lib")
    issued = [token for token, state in api.tokens.items() if state.installation]
    logged = "\n".join(f"{record.getMessage()} {vars(record)}" for record in caplog.records)
    assert "access_tokens" in logged  # PyGithub logged the token response, masked:
    assert issued and not [token for token in issued if token in logged]
    assert "PRIVATE KEY" not in logged


def test_github_app_with_the_wrong_key_is_a_config_error(api: GitHubApi) -> None:
    private, _ = _app_key()
    _, other_public = _app_key()
    api.add_app("4242", other_public)
    forge = GitHubForge(api.api_url, app_id="4242", app_key=private, options=_options([]))

    with pytest.raises(ConfigError, match="HTTP 401"):
        forge.clone_url(REPO)


def test_credentials_are_required_and_validated() -> None:
    with pytest.raises(ConfigError, match="ROTATION_BOT_GITHUB_TOKEN"):
        GitHubForge("https://api.github.com")
    with pytest.raises(ConfigError, match="PEM private key"):
        GitHubForge("https://api.github.com", app_id="1", app_key="not a key")
    with pytest.raises(ConfigError, match="http"):
        GitHubForge("ftp://example.com", token=TOKEN)


def test_unknown_repository_and_unreachable_server(rig: Rig) -> None:
    with pytest.raises(RepositoryError, match="octo/missing"):
        rig.forge.clone_url("octo/missing")
    with pytest.raises(RepositoryError, match="not owner/name"):
        rig.forge.find_proposal("../etc", "x")
    dead = GitHubForge("http://127.0.0.1:9/api/v3", token=TOKEN, options=_options([]))
    with pytest.raises(ServiceUnavailable, match=r"127\.0\.0\.1:9"):
        dead.find_proposal(REPO, "rotation-bot/sharp-0.33.5")


def test_canary_token_never_in_a_body_a_log_line_or_the_repository(
    rig: Rig, caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    caplog.set_level(logging.DEBUG)
    for name in ("github", "github.Requester", "urllib3", "git"):
        caplog.set_level(logging.DEBUG, logger=name)
    proposal = rig.push_rotation("0.33.5", labels=("dependencies",))
    rig.forge.ensure_proposal(REPO, proposal, supersedes_prefix=PREFIX)
    rig.forge.ensure_notice(
        REPO, Notice("incident", "sharp", "0.33.5", "failed", f"token? {TOKEN}\n")
    )
    bad = GitHubForge(rig.api.api_url, token=TOKEN + "x", options=_options([]))
    with pytest.raises(ConfigError) as rejected:
        bad.find_proposal(REPO, proposal.branch)

    api_requests = [r for r in rig.api.requests if ".git/" not in r.path]
    assert api_requests and all(
        r.headers["authorization"] == f"token {TOKEN}" for r in api_requests if r.status != 401
    )
    assert not [r for r in rig.api.requests if TOKEN.encode() in r.body]
    assert caplog.records and not [r for r in caplog.records if TOKEN in str(vars(r))]
    assert TOKEN not in str(rejected.value)
    leaks = subprocess.run(
        ["grep", "-rl", "--", TOKEN, str(rig.cache), str(rig.remote.bare), str(tmp_path / "api")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert leaks.stdout == ""
    history = rig.remote.git("log", "--all", "-p", cwd=rig.remote.bare)
    assert proposal.branch in rig.remote.branches() and TOKEN not in history


def test_push_auth_is_a_basic_header_and_git_needs_it(rig: Rig) -> None:
    auth = rig.forge.push_auth(REPO)
    assert auth.header.startswith("Authorization: basic ")
    assert TOKEN not in auth.header
    anonymous = subprocess.run(
        ["git", "ls-remote", rig.forge.clone_url(REPO)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0"},
        check=False,
    )
    authorized = subprocess.run(
        ["git", "ls-remote", rig.forge.clone_url(REPO)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin", "GIT_TERMINAL_PROMPT": "0", **auth.environment()},
        check=False,
    )
    assert anonymous.returncode != 0
    assert authorized.returncode == 0 and "refs/heads/main" in authorized.stdout


def test_cli_run_opens_pull_requests_and_a_rerun_writes_nothing(
    env: Env, api: GitHubApi, tmp_path: Path
) -> None:
    project = tmp_path / "project"
    make_project(project, env)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(project), str(bare)], check=True)
    api.add_repository(REPO, bare)
    api.add_token(TOKEN)
    env.extra.update(ROTATION_BOT_GITHUB_URL=api.api_url, ROTATION_BOT_GITHUB_TOKEN=TOKEN)

    code, first = bot_json(env, "run", "--repo", REPO, "--runbook", "sharp")
    writes = [r for r in api.requests if r.method != "GET" and ".git/" not in r.path]
    again_code, again = bot_json(env, "run", "--repo", REPO, "--runbook", "sharp")

    pulls = {pull.head: pull for pull in api.pulls(REPO)}
    assert code == again_code == 0
    assert [run["outcome"] for run in first] == ["proposed", "proposed"]
    assert [run["outcome"] for run in again] == ["up-to-date", "up-to-date"]
    assert set(pulls) == {"rotation-bot/sharp-0.33.6", "rotation-bot/sharp-0.34.1"}
    assert pulls["rotation-bot/sharp-0.34.1"].draft and not pulls["rotation-bot/sharp-0.33.6"].draft
    assert "| `@img/sharp-linux-x64` | `0.33.4` → `0.33.6` |" in str(
        pulls["rotation-bot/sharp-0.33.6"].body
    )
    assert [r for r in api.requests if r.method != "GET" and ".git/" not in r.path] == writes
    leaks = subprocess.run(
        ["grep", "-rl", "--", TOKEN, str(tmp_path)], capture_output=True, text=True, check=False
    )
    assert leaks.stdout == ""  # not in the state dir, the audit database, the cache or a clone
    # every run records what it cost in API calls; an up-to-date rerun costs one lookup each
    store = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}")
    finished = {
        run["run_id"]: next(
            step for step in store.run_steps(run["run_id"]) if step["kind"] == "run-finished"
        )["evidence"]
        for run in [*first, *again]
    }
    assert all(evidence["api_requests"] >= 1 for evidence in finished.values())
    assert [finished[run["run_id"]]["api_requests"] for run in again] == [1, 1]


def test_a_branch_head_is_the_commit_id_alone_asked_on_condition_that_it_moved(rig: Rig) -> None:
    head = subprocess.run(
        ["git", "-C", str(rig.remote.bare), "rev-parse", "main"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert rig.forge.branch_head(REPO, "main") == head
    asked = rig.api.requests[-1]
    assert asked.headers["accept"] == SHA_MEDIA_TYPE and "if-none-match" not in asked.headers
    remaining = rig.api.tokens[TOKEN].remaining

    assert rig.forge.branch_head(REPO, "main", head) == head
    assert rig.api.requests[-1].headers["if-none-match"] == f'"{head}"'
    assert rig.api.requests[-1].status == 304
    assert rig.api.tokens[TOKEN].remaining == remaining  # a 304 is free on GitHub

    moved = "0" * 40  # what the memo saw is no longer the head: GitHub answers the new id
    assert rig.forge.branch_head(REPO, "main", moved) == head
    assert rig.api.requests[-1].status == 200

    path = f"/repos/{REPO}/commits/main"
    rig.api.inject(Fault.respond("GET", path, 200, PlainText("<html>", SHA_MEDIA_TYPE)))
    with pytest.raises(InvalidRemoteData, match="the API gave no commit id for main"):
        rig.forge.branch_head(REPO, "main", head)
    rig.api.inject(Fault.respond("GET", path, 304))
    with pytest.raises(InvalidRemoteData, match="the API answered 304 for main unasked"):
        rig.forge.branch_head(REPO, "main")
