"""The optional `npm-audit-signatures` step: skipped with a reason unless enabled; when enabled it
installs a scratch copy with real npm from a real signing registry and runs `npm audit
signatures`, which needs the sigstore TUF service: here a refusing proxy stands in for the
unreachable internet, so the step must report the service as unavailable (exit 3), not pass."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.errors import EXIT_UNAVAILABLE, ServiceUnavailable
from bot.steps.registry import get_step
from bot.workspace import Workspace
from tests.support.git_fixture import commit_directory
from tests.support.processes import free_port
from tests.support.signing_registry import SigningRegistry, start_signing_registry
from tests.support.step_context import make_context, rotation_for
from tests.support.verdaccio import publish_tools


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningRegistry]:
    registry = start_signing_registry(tmp_path_factory.mktemp("signing"))
    try:
        registry.publish("sharp", "0.33.5")
        publish_tools(registry.verdaccio)
        yield registry
    finally:
        registry.stop()


def test_skipped_with_reason_unless_enabled(tmp_path: Path, signing: SigningRegistry) -> None:
    result = get_step("npm-audit-signatures")(
        make_context(tmp_path, signing.url, rotation_for("0.33.5", {}))
    )

    assert result.status == "skipped"
    assert "not enabled (set verify.npm-audit-signatures: true)" in result.summary


def test_enabled_runs_npm_in_a_scratch_copy_and_reports_the_unreachable_tuf_service(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    project = tmp_path / "app"
    project.mkdir()
    (project / "package.json").write_text(
        json.dumps({"name": "app", "version": "1.0.0", "dependencies": {"sharp": "0.33.5"}})
    )
    (tmp_path / "npmrc").write_text(f"registry={signing.url}\n")
    subprocess.run(
        ["npm", "install", "--package-lock-only", "--ignore-scripts", "--no-audit"],
        cwd=project,
        check=True,
        capture_output=True,
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "NPM_CONFIG_USERCONFIG": str(tmp_path / "npmrc"),
            "NPM_CONFIG_GLOBALCONFIG": os.devnull,
            "NPM_CONFIG_CACHE": str(tmp_path / "cache"),
        },
    )
    commit_directory(project)
    refusing_proxy = f"http://127.0.0.1:{free_port()}"
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for("0.33.5", {}),
        environ={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path),
            "HTTPS_PROXY": refusing_proxy,
            "NO_PROXY": "127.0.0.1",
        },
        worktree=project,
        workspace=Workspace.open_local(project),
        config="verify:\n  npm-audit-signatures: true\n",
    )

    with pytest.raises(
        ServiceUnavailable, match=r"could not reach its services \(ECONNREFUSED\)"
    ) as caught:
        get_step("npm-audit-signatures")(ctx)

    assert caught.value.exit_code == EXIT_UNAVAILABLE
    assert "tuf-repo-cdn" in caught.value.fields["output"]  # npm got as far as the audit
    assert not (project / "node_modules").exists()  # the worktree was never installed into
    assert not (ctx.scratch / "projects" / "_root").exists()  # the scratch copy is gone
