"""The sharp runbook end to end: real Verdaccio, real npm, real git, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path

import git
import pytest

from bot.audit import AuditStore
from tests.conftest import (
    FAMILY,
    Env,
    bot,
    bot_json,
    lock_entries,
    make_project,
    pin_names,
    publish_sharp,
)
from tests.support.verdaccio import Verdaccio


def branches(repo: git.Repo) -> dict[str, str]:
    return {head.name: head.commit.hexsha for head in repo.heads}


def audit(env: Env) -> AuditStore:
    return AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}")


def test_plan_lists_patch_and_major_targets_with_derived_pins(tmp_path: Path, env: Env) -> None:
    repo = make_project(tmp_path / "app", env)
    head = repo.head.commit.hexsha

    code, plans = bot_json(env, "plan", "--repo", str(tmp_path / "app"), "--runbook", "sharp")

    assert code == 0
    (plan,) = plans
    assert plan["current_version"] == "0.33.4"
    assert [(r["kind"], r["new_version"]) for r in plan["rotations"]] == [
        ("patch", "0.33.6"),
        ("major", "0.34.1"),
    ]
    patch, major = plan["rotations"]
    assert {p["name"]: p["new_version"] for p in patch["pins"]} == {
        "@img/sharp-linux-x64": "0.33.6",
        "@img/sharp-libvips-linux-x64": "1.0.4",
        "@img/sharp-linuxmusl-x64": "0.33.6",
        "@img/sharp-libvips-linuxmusl-x64": "1.0.4",
    }
    assert {p["name"]: p["previous_version"] for p in major["pins"]}[
        "@img/sharp-libvips-linux-x64"
    ] == "1.0.2"
    assert major["branch"] == "rotation-bot/sharp-0.34.1"
    # plan changes nothing and records nothing
    assert repo.head.commit.hexsha == head and list(branches(repo)) == ["main"]
    assert not (env.state / "audit.sqlite3").exists() or audit(env).list_runs() == []


def test_run_rotates_patch_and_major_on_separate_branches(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    repo = make_project(
        path,
        env,
        config="version: 1\nrunbooks:\n  sharp:\n    minimum-release-age: 0\n"
        "    document: docs/pins.md\n",
        files={
            "docs/pins.md": "| Package | Version |\n| --- | --- |\n| sharp | 0.33.4 |\n"
            "| `@img/sharp-libvips-linux-x64` | 1.0.2 |\n",
            "src/resize.ts": "import sharp from 'sharp';\nexport const r = () => sharp();\n",
            "src/other.js": 'const x = require("sharp-cli");\n',
        },
    )
    before = {name: (path / name).read_text() for name in ("package.json", "package-lock.json")}

    result = bot(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert result.exit_code == 0, result.output
    heads = branches(repo)
    assert set(heads) == {"main", "rotation-bot/sharp-0.33.6", "rotation-bot/sharp-0.34.1"}
    # the user's checkout is untouched and no worktree is left behind
    assert {name: (path / name).read_text() for name in before} == before
    assert not repo.is_dirty(untracked_files=True)
    assert len(repo.git.worktree("list").splitlines()) == 1

    for version in ("0.33.6", "0.34.1"):
        commit = repo.commit(f"rotation-bot/sharp-{version}")
        assert commit.parents[0].hexsha == repo.head.commit.hexsha
        manifest = json.loads(repo.git.show(f"{commit.hexsha}:package.json"))
        libvips = FAMILY[version]
        assert manifest["dependencies"]["sharp"] == version
        assert manifest["overrides"] == {
            name: (libvips if "libvips" in name else version) for name in pin_names()
        }
        entries = lock_entries(repo.git.show(f"{commit.hexsha}:package-lock.json"))
        assert entries["node_modules/sharp"]["version"] == version
        for name in pin_names():
            entry = entries[f"node_modules/{name}"]
            published = env_registry_manifest(env, name, entry["version"])
            assert entry["integrity"] == published["dist"]["integrity"]
            assert entry["libc"] == (["musl"] if "musl" in name else ["glibc"])
        doc = repo.git.show(f"{commit.hexsha}:docs/pins.md")
        assert f"| sharp | {version} |" in doc
        assert f"| `@img/sharp-libvips-linux-x64` | {libvips} |" in doc

    runs = {row["target"]: row for row in audit(env).list_runs()}
    major_body = runs["0.34.1"]["proposal_body"]
    assert "Major rotation checklist" in major_body
    assert "`src/resize.ts:1`" in major_body and "sharp-cli" not in major_body
    assert "Major rotation checklist" not in runs["0.33.6"]["proposal_body"]
    assert "`@img/sharp-libvips-linux-x64` | `1.0.2` → `1.0.4`" in runs["0.33.6"]["proposal_body"]
    assert audit(env).verify().ok


def env_registry_manifest(env: Env, name: str, version: str) -> dict[str, object]:
    import httpx

    response = httpx.get(f"{env.registry_url}{name.replace('/', '%2f')}", timeout=10)
    manifest: dict[str, object] = response.json()["versions"][version]
    return manifest


def test_second_run_creates_nothing_new(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    repo = make_project(path, env)
    assert bot(env, "run", "--repo", str(path)).exit_code == 0
    heads = branches(repo)

    code, summaries = bot_json(env, "run", "--repo", str(path))

    assert code == 0
    assert {s["outcome"] for s in summaries if s["runbook"] == "sharp"} == {"up-to-date"}
    assert branches(repo) == heads


def test_newer_release_supersedes_the_open_proposal(
    tmp_path: Path, private_registry: Verdaccio
) -> None:
    env = Env(tmp_path, private_registry.url, private_registry.token)
    path = tmp_path / "app"
    repo = make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    assert bot(env, "run", "--repo", str(path), "--runbook", "sharp").exit_code == 0
    publish_sharp(private_registry, "0.33.8", "1.0.6")

    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert code == 0
    assert [s["target"] for s in summaries] == ["0.33.8"]
    assert set(branches(repo)) == {"main", "rotation-bot/sharp-0.33.8"}
    old = audit(env).find_proposal(str(path.resolve()), "rotation-bot/sharp-0.33.6")
    assert old is not None and old["state"] == "superseded"
    assert old["superseded_by"] == "rotation-bot/sharp-0.33.8"


def test_tampered_binary_fails_closed(tmp_path: Path, private_registry: Verdaccio) -> None:
    env = Env(tmp_path, private_registry.url, private_registry.token)
    path = tmp_path / "app"
    repo = make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    private_registry.tamper("@img/sharp-linuxmusl-x64", "0.33.6")

    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert code == 1
    (summary,) = summaries
    assert summary["outcome"] == "failed" and "verify-tarballs" in summary["message"]
    assert list(branches(repo)) == ["main"]
    records = audit(env).run_steps(summary["run_id"])
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["kind"] == "verify-tarballs"
    assert any("@img/sharp-linuxmusl-x64@0.33.6" in p for p in failed["evidence"]["problems"])
    assert "incident" in [r["kind"] for r in records]
    assert not any(r["kind"] == "propose" for r in records)


def test_known_malicious_node_fails_closed_with_its_reason_in_the_trail(
    tmp_path: Path, env: Env
) -> None:
    advisory = {
        "id": "MAL-2099-42",
        "affected": [
            {
                "package": {"ecosystem": "npm", "name": "@img/sharp-linuxmusl-x64"},
                "versions": ["0.33.6"],
            }
        ],
    }
    (tmp_path / "MAL-2099-42.json").write_text(json.dumps(advisory))
    env.extra["ROTATION_BOT_MALICIOUS_ADVISORIES"] = str(tmp_path / "MAL-2099-42.json")
    path = tmp_path / "app"
    repo = make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )

    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert code == 1
    (summary,) = summaries
    assert summary["outcome"] == "failed" and "verify-closure" in summary["message"]
    assert list(branches(repo)) == ["main"]
    records = audit(env).run_steps(summary["run_id"])
    failed = next(r for r in records if r["status"] == "failed")
    assert failed["kind"] == "verify-closure"
    assert failed["evidence"]["problems"] == [
        "@img/sharp-linuxmusl-x64@0.33.6 is known-malicious (MAL-2099-42)"
    ]
    assert failed["evidence"]["advisories"] == 1
    assert "incident" in [r["kind"] for r in records]
    assert not any(r["kind"] in ("verify-tarballs", "propose") for r in records)


@pytest.mark.parametrize("omit_resolved", [False, True])
def test_lockfile_keeps_its_resolved_style(tmp_path: Path, env: Env, omit_resolved: bool) -> None:
    path = tmp_path / "app"
    repo = make_project(
        path,
        env,
        omit_resolved=omit_resolved,
        config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n",
    )
    assert bot(env, "run", "--repo", str(path), "--runbook", "sharp").exit_code == 0
    entries = lock_entries(repo.git.show("rotation-bot/sharp-0.33.6:package-lock.json"))
    has_resolved = "resolved" in entries["node_modules/@img/sharp-linux-x64"]
    assert has_resolved is not omit_resolved


def test_range_spec_gets_its_floor_raised_and_scripts_never_run(tmp_path: Path, env: Env) -> None:
    marker = tmp_path / "script-ran"
    path = tmp_path / "app"
    repo = make_project(
        path,
        env,
        spec="^0.33.4",
        manifest_extra={"scripts": {"preinstall": f"touch {marker}", "install": f"touch {marker}"}},
        config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n",
    )
    assert bot(env, "run", "--repo", str(path)).exit_code == 0
    manifest = json.loads(repo.git.show("rotation-bot/sharp-0.33.6:package.json"))
    assert manifest["dependencies"]["sharp"] == "^0.33.6"
    assert not marker.exists()


def test_young_releases_wait_for_the_minimum_age(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(path, env, config=None)  # zero config: the runbook's 3-day minimum age

    code, plans = bot_json(env, "plan", "--repo", str(path), "--runbook", "sharp")

    assert code == 0
    assert plans[0]["rotations"] == []
    reasons = {item["subject"]: item["reason"] for item in plans[0]["skipped"]}
    assert "younger than the minimum release age" in reasons["sharp@0.33.6"]


def test_token_from_npmrc_variable_never_lands_anywhere(tmp_path: Path, env: Env) -> None:
    canary = env.token
    (env.home).mkdir(parents=True, exist_ok=True)
    host = env.registry_url.removeprefix("http:")
    (env.home / ".npmrc").write_text(
        f"registry={env.registry_url}\n{host}:_authToken=${{NPM_TOKEN}}\n"
    )
    env.extra["NPM_TOKEN"] = canary
    path = tmp_path / "app"
    repo = make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )

    result = bot(env, "-v", "run", "--repo", str(path))

    assert result.exit_code == 0, result.output
    assert canary not in result.output
    tree = repo.git.show("rotation-bot/sharp-0.33.6", "--format=%B", "--patch")
    assert canary not in tree
    database = (env.state / "audit.sqlite3").read_bytes()
    assert canary.encode() not in database


def test_moved_base_branch_updates_the_same_branch_and_proposal(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    # behind-base: regenerate when the base moves even without a conflict (the default,
    # conflicted, leaves such a rotation as it is)
    config = (
        "runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
        "pull-requests:\n  rebase-when: behind-base\n"
    )
    repo = make_project(path, env, config=config)
    assert bot(env, "run", "--repo", str(path), "--runbook", "sharp").exit_code == 0
    first = repo.commit("rotation-bot/sharp-0.33.6").hexsha
    (path / "README.md").write_text("unrelated change\n")
    repo.git.add("README.md")
    repo.git.commit("-m", "docs", "--no-verify")

    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert code == 0
    assert [s["outcome"] for s in summaries] == ["proposed"]
    assert set(branches(repo)) == {"main", "rotation-bot/sharp-0.33.6"}
    updated = repo.commit("rotation-bot/sharp-0.33.6")
    assert updated.hexsha != first
    assert updated.parents[0].hexsha == repo.head.commit.hexsha
    steps = audit(env).run_steps(summaries[0]["run_id"])
    propose = next(step for step in steps if step["kind"] == "propose")
    assert propose["evidence"]["created"] is False


def test_git_url_repository_gets_the_branch_pushed(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    remote = tmp_path / "remote.git"
    git.Repo.clone_from(path, remote, bare=True)

    result = bot(env, "run", "--repo", f"file://{remote}", "--runbook", "sharp")

    assert result.exit_code == 0, result.output
    bare = git.Repo(remote)
    assert {head.name for head in bare.heads} == {"main", "rotation-bot/sharp-0.33.6"}
    manifest = json.loads(bare.git.show("rotation-bot/sharp-0.33.6:package.json"))
    assert manifest["overrides"]["@img/sharp-libvips-linuxmusl-x64"] == "1.0.4"
    again = bot(env, "run", "--repo", f"file://{remote}", "--runbook", "sharp", "--json")
    assert [s["outcome"] for s in json.loads(again.stdout)] == ["up-to-date"]


def test_audit_commands_show_verify_and_export_the_trail(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    code, summaries = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")
    assert code == 0
    run_id = summaries[0]["run_id"]

    listing = bot(env, "audit", "list")
    shown = bot(env, "audit", "show", run_id[:8])
    verified = bot(env, "audit", "verify")
    exported = bot(env, "audit", "export")

    assert run_id[:8] in listing.output and "proposed" in listing.output
    assert "confirm-lockfile" in shown.output and "Rotate sharp 0.33.4 → 0.33.6" in shown.output
    assert verified.exit_code == 0 and verified.output.startswith("ok: ")
    lines = [json.loads(line) for line in exported.output.splitlines()]
    kinds = [line["kind"] for line in lines if line["type"] == "step" and line["run_id"] == run_id]
    assert kinds[0] == "run-started" and kinds[-1] == "run-finished" and "verify-tarballs" in kinds

    store = audit(env)
    from sqlalchemy import update

    from bot.audit import steps

    with store.engine.begin() as connection:
        connection.execute(
            update(steps).where(steps.c.kind == "verify-tarballs").values(status="skipped")
        )
    broken = bot(env, "audit", "verify")
    assert broken.exit_code == 1 and "contents were edited" in broken.output


def test_cli_run_exits_3_when_the_repository_is_busy(tmp_path: Path, env: Env) -> None:
    import threading

    from bot.service.locks import RepositoryLocks

    path = tmp_path / "app"
    repo = make_project(path, env)
    held, release = threading.Event(), threading.Event()

    def another_rotation() -> None:  # e.g. the service, in another thread
        with RepositoryLocks(env.state / "locks").hold(str(path), timeout=0):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=another_rotation)
    holder.start()
    try:
        assert held.wait(10)
        result = bot(env, "run", "--repo", str(path), "--runbook", "sharp")
    finally:
        release.set()
        holder.join()
    assert result.exit_code == 3
    assert "rotation-bot: busy:" in result.output
    assert [head.name for head in repo.heads] == ["main"]


def test_rerun_renders_the_same_body_so_updates_do_not_churn(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    repo = make_project(
        path, env, config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
    )
    _, first = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")
    repo.git.branch("-D", "rotation-bot/sharp-0.33.6")  # forces a full second execution

    _, second = bot_json(env, "run", "--repo", str(path), "--runbook", "sharp")

    def without_run_id(body: str) -> str:
        return body.replace(first[0]["run_id"], "RUN").replace(second[0]["run_id"], "RUN")

    assert second[0]["outcome"] == "proposed"
    assert without_run_id(second[0]["proposal"]["body"]) == without_run_id(
        first[0]["proposal"]["body"]
    )


def test_configured_base_branch_is_where_rotations_start(tmp_path: Path, env: Env) -> None:
    path = tmp_path / "app"
    repo = make_project(
        path,
        env,
        config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n"
        "pull-requests:\n  base: release\n",
    )
    repo.git.branch("release")
    release_head = repo.commit("release").hexsha
    (path / "NOTES.md").write_text("main moves on\n")
    repo.git.add("NOTES.md")
    repo.git.commit("-m", "main only", "--no-verify")

    result = bot(env, "run", "--repo", str(path), "--runbook", "sharp")

    assert result.exit_code == 0, result.output
    assert repo.commit("rotation-bot/sharp-0.33.6").parents[0].hexsha == release_head
    repo.git.branch("-D", "release")
    missing = bot(env, "run", "--repo", str(path), "--runbook", "sharp")
    assert missing.exit_code == 2 and "base branch 'release' does not exist" in missing.output
