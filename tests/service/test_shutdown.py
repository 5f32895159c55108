"""SIGTERM stops a real `rotation-bot serve` while its rotation downloads tarballs from a registry
that sends one byte every half second: the downloads are cancelled at their next chunk, the run
is recorded interrupted, and the worktree and the scratch directory (holding the npm userconfig
with the registry token) are gone."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import git

from bot.audit import AuditStore
from bot.config import Settings
from bot.service.scheduler import job_id
from tests.conftest import Env, make_project
from tests.service.test_serve import make_due
from tests.support.bot_process import start_bot
from tests.support.slow_servers import SlowTarballs
from tests.support.verdaccio import Verdaccio


def test_sigterm_cancels_downloads_and_records_the_run_interrupted(
    tmp_path: Path, env: Env, registry: Verdaccio
) -> None:
    project = tmp_path / "app"
    repo = make_project(project, env)
    proxy = SlowTarballs(registry.url, interval=0.5).start()
    served = Env(tmp_path / "served", proxy.url, registry.token)
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    settings = Settings(
        state_dir=served.state, database_url=f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    )
    environ = {
        **served.variables(),
        "ROTATION_BOT_REPOSITORIES": str(project),
        "ROTATION_BOT_LISTEN": "127.0.0.1:0",
        "ROTATION_BOT_DATABASE_URL": settings.resolved_database_url,
        "TMPDIR": str(temporary),
    }
    try:
        first = start_bot(tmp_path / "first", environ, "serve")  # creates the cron jobs
        first.wait_for_output("serving on")
        first.signal(signal.SIGTERM)
        assert first.finish() == 0, first.output()
        make_due(settings, job_id(str(project), "sharp"), datetime.now(UTC) - timedelta(hours=1))

        second = start_bot(tmp_path / "second", environ, "serve")
        assert proxy.tarball_started.wait(120), second.output()
        second.signal(signal.SIGTERM)
        code = second.finish()
    finally:
        proxy.stop()

    assert code == 0, second.output()
    assert proxy.tarballs_finished == 0  # cancelled mid-download, not waited for
    assert "Traceback" not in second.output()
    (run,) = [r for r in AuditStore(settings.resolved_database_url).list_runs() if r["target"]]
    assert (run["runbook"], run["outcome"]) == ("sharp", "interrupted"), run
    assert "ShutdownRequested" in run["message"]
    assert list(temporary.iterdir()) == []  # worktree, scratch and npm userconfig removed
    assert len(repo.git.worktree("list").splitlines()) == 1
    assert {head.name for head in git.Repo(project).heads} == {"main"}
