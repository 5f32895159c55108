"""`serve` end to end with the real pipeline: a `/rotate` comment opens a real pull request on the
local GitHub-shaped server, a missed cron cycle rotates a real repository once after a restart,
and SIGTERM lets the running rotation finish before the process exits."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git
import httpx
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from bot.audit import AuditStore
from bot.config import Settings
from bot.forges.github import GitHubForge, GitHubOptions
from bot.forges.local import LocalForge
from bot.pipeline import Pipeline
from bot.runbook import DEFAULT_RUNBOOKS_DIR, load_runbooks
from bot.service.app import RunningService, ServiceOptions, repository_lister, start_service
from bot.service.scheduler import JOBS_TABLE, job_id
from bot.services import build_services
from tests.conftest import Env, make_project
from tests.support.github_api import start_github_api
from tests.support.service import SECRET, comment_payload, deliver, wait_until

ROOT = Path(__file__).resolve().parents[2]
FAST = GitHubOptions(
    timeout=5, seconds_between_requests=0, seconds_between_writes=0, backoff=0.1, secondary_wait=1.0
)


def pipeline_for(settings: Settings, env: Env, forge: GitHubForge | None) -> Pipeline:
    audit = AuditStore(settings.resolved_database_url)
    services = build_services(settings, env.variables(), forge=forge or LocalForge(audit))
    return Pipeline(services=services, audit=audit, runbooks=load_runbooks(DEFAULT_RUNBOOKS_DIR))


def make_due(settings: Settings, job: str, moment: datetime) -> None:
    """Leave `job` due at `moment`, as a process that was down since then would."""
    scheduler = BackgroundScheduler(
        jobstores={
            "default": SQLAlchemyJobStore(url=settings.resolved_database_url, tablename=JOBS_TABLE)
        },
        timezone=UTC,
    )
    scheduler.start(paused=True)
    try:
        scheduler.modify_job(job, next_run_time=moment)
    finally:
        scheduler.remove_jobstore("default")
        scheduler.shutdown(wait=False)


def test_rotate_comment_opens_a_pull_request_through_the_real_pipeline(
    tmp_path: Path, env: Env
) -> None:
    project = tmp_path / "app"
    make_project(project, env)
    bare = tmp_path / "app.git"
    git.Repo.clone_from(project, bare, bare=True)
    running = start_github_api(tmp_path / "github")
    api = running.api
    # Served as an App installation: the repository list comes from the App's installations.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    api.add_app("4242", public)
    api.add_repository("octo/app", bare)
    api.add_installation("4242", "octo", ("octo/app",))
    api.set_permission("octo/app", "alice", "write")
    issue = api.add_issue("octo/app", title="Rotate please", user="alice")
    comment = api.add_comment("octo/app", issue, user="alice", body="/rotate sharp 0.33.5")
    settings = Settings(
        github_url=api.api_url,
        github_app_id="4242",
        github_app_key=private,
        webhook_secret=SECRET,
        listen="127.0.0.1:0",
        state_dir=env.state,
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        release_notes_url="http://127.0.0.1:9",
    )
    forge = GitHubForge.from_settings(settings, options=FAST)
    pipeline = pipeline_for(settings, env, forge)
    # What `serve_forever` wires for the GitHub forge: the App's repositories; chat answers
    # through the pipeline's forge.
    service = start_service(
        settings,
        pipeline,
        repositories=repository_lister(settings, pipeline.forge),
        options=ServiceOptions(shutdown_grace=10),
    )
    try:
        assert service.scheduler.serves("octo/app")
        payload = comment_payload("/rotate sharp 0.33.5", login="alice")
        payload["repository"]["full_name"] = "octo/app"
        payload["issue"]["number"] = issue
        payload["comment"]["id"] = comment
        url = f"https://github.com/octo/app/issues/{issue}#issuecomment-{comment}"
        payload["comment"]["html_url"] = url
        with httpx.Client(timeout=5) as client:
            response = deliver(client, service.url, payload)
        assert response.status_code == 202

        def bot_replies() -> list[str]:
            return [c.body for c in api.comments_on("octo/app", issue) if c.user != "alice"]

        wait_until(bot_replies, timeout=120, message="the bot's answer")
    finally:
        service.stop()
        running.stop()

    (reply,) = bot_replies()
    assert "rotation finished" in reply, reply
    (pull,) = api.pulls("octo/app", state="open")
    assert pull.head == "rotation-bot/sharp-0.33.5"
    assert f"/pull/{pull.number}" in reply or f"/pulls/{pull.number}" in reply, reply
    reactions = [
        content
        for comment_id, _, content in api.repository("octo/app").reactions
        if comment_id == comment
    ]
    assert reactions == ["eyes", "+1"]
    reactions_made = api.requests_matching("POST", "/repos/octo/app/issues/comments/*")
    assert {r.headers.get("authorization", "")[:10] for r in reactions_made} == {"token ghs_"}
    (run,) = AuditStore(settings.resolved_database_url).list_runs()
    assert (run["trigger"], run["target"], run["outcome"]) == ("chat", "0.33.5", "proposed")
    assert run["actor"] == f"alice ({url})"
    assert run["id"] in reply


def test_missed_cycle_rotates_a_real_repository_once_after_a_restart(
    tmp_path: Path, env: Env
) -> None:
    project = tmp_path / "app"
    repo = make_project(project, env)
    settings = Settings(
        listen="127.0.0.1:0",
        state_dir=env.state,
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        repositories=(str(project),),
        release_notes_url="http://127.0.0.1:9",
    )

    def start() -> RunningService:
        return start_service(
            settings,
            pipeline_for(settings, env, None),
            repositories=lambda: settings.repositories,
            options=ServiceOptions(shutdown_grace=30),
        )

    first = start()
    first.stop()
    assert {head.name for head in repo.heads} == {"main"}  # nothing was due: nothing ran
    make_due(settings, job_id(str(project), "sharp"), datetime.now(UTC) - timedelta(days=2))

    second = start()
    audit = AuditStore(settings.resolved_database_url)
    try:
        wait_until(
            lambda: len([r for r in audit.list_runs() if r["outcome"]]) >= 2,
            timeout=120,
            message="the scheduled rotations",
        )
    finally:
        second.stop()
    third = start()
    third.stop()

    runs = audit.list_runs()
    assert sorted((r["trigger"], r["runbook"], r["target"], r["outcome"]) for r in runs) == [
        ("schedule", "sharp", "0.33.6", "proposed"),
        ("schedule", "sharp", "0.34.1", "proposed"),
    ]
    assert {head.name for head in repo.heads} == {
        "main",
        "rotation-bot/sharp-0.33.6",
        "rotation-bot/sharp-0.34.1",
    }
    assert audit.verify().ok


SERVE = """
import json, sys, time
from pathlib import Path
from bot.audit import AuditStore
from bot.config import Settings
from bot.service.app import ServiceOptions, serve_forever
from tests.support.service import RecordingPipeline, RecordingRunner

root = Path(sys.argv[1])
settings = Settings(listen="127.0.0.1:0", state_dir=root / "state",
                    database_url=f"sqlite:///{root / 'audit.sqlite3'}", repositories=("octo/app",))

class Runner(RecordingRunner):
    def run(self, request):
        (root / "entered").write_text("1")
        result = super().run(request)
        (root / "finished").write_text("1")
        return result

pipeline = RecordingPipeline(Runner(seconds=1.5), AuditStore(settings.resolved_database_url))
serve_forever(settings, pipeline,
              options=ServiceOptions(shutdown_grace=10),
              on_ready=lambda url: print(json.dumps({"url": url}), flush=True))
print("exited", flush=True)
"""


def test_sigterm_lets_the_running_rotation_finish_then_exits(tmp_path: Path) -> None:
    settings = Settings(
        state_dir=tmp_path / "state",
        database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}",
        repositories=("octo/app",),
    )

    def serve() -> tuple[subprocess.Popen[str], str]:
        process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(tmp_path)],
            cwd=ROOT,
            text=True,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            start_new_session=True,
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        return process, json.loads(line)["url"]

    process, _ = serve()  # creates the jobs
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    make_due(settings, job_id("octo/app", "sharp"), datetime.now(UTC) - timedelta(hours=1))

    process, url = serve()
    try:
        wait_until((tmp_path / "entered").exists, message="the scheduled run to start")
        assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
        process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        assert process.wait(20) == 0
        assert process.stdout is not None and "exited" in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "finished").exists(), "the running rotation was allowed to finish"
    assert time.monotonic() - started < 10
    try:
        httpx.get(f"{url}/healthz", timeout=1)
        raise AssertionError("still listening after exit")
    except httpx.ConnectError:
        pass
