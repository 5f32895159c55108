"""The base-images watcher and the repin step on real git repositories and a real registry."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from bot.config import RepoConfig, RunbookSettings, Settings, parse_repo_config
from bot.errors import ManifestError, StepFailed
from bot.models import DigestChange, Plan, Rotation, StepResult
from bot.runbook import DEFAULT_RUNBOOKS_DIR, Runbook, load_runbook
from bot.services import Services
from bot.sources.http import HttpSource
from bot.sources.oci.client import make_oci_client
from bot.steps.registry import StepContext, get_step
from bot.steps.repin_base_images import apply_changes
from bot.watchers import WatchRequest, get_watcher
from bot.workspace import Workspace
from tests.support.git_fixture import commit_directory
from tests.support.oci_registry import (
    BrokenRegistry,
    Registry,
    broken_registry_fixture,
    registry_fixture,
)
from tests.support.processes import free_port

registry = registry_fixture()
broken = broken_registry_fixture()

NOW = datetime(2024, 6, 1, tzinfo=UTC)
OLD_DATE = "2024-01-01T00:00:00Z"


def runbook() -> Runbook:
    return load_runbook(DEFAULT_RUNBOOKS_DIR / "base-image.yml")


def services(oci: bool = True, settings: Settings | None = None) -> Services:
    http = HttpSource(attempts=1)
    return Services(
        settings=settings or Settings(),
        environ={},
        http=http,
        releases=cast(Any, None),
        forge=cast(Any, None),
        clock=lambda: NOW,
        # without a client, any registry request would fail the test with AttributeError
        oci=make_oci_client(Settings(), {}, http=http) if oci else cast(Any, None),
    )


def make_repo(path: Path, files: Mapping[str, str]) -> Workspace:
    path.mkdir(parents=True)
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_bytes(text.encode())
    commit_directory(path)
    return Workspace.open_local(path)


def watch(
    workspace: Workspace,
    config: str | None = None,
    *,
    oci: bool = True,
    now: datetime = NOW,
    settings: Settings | None = None,
) -> Plan:
    repo_config: RepoConfig = parse_repo_config(config)
    request = WatchRequest(
        runbook=runbook(),
        settings=repo_config.runbook("base-image"),
        repo_config=repo_config,
        workspace=workspace,
        services=services(oci, settings),
        npm=cast(Any, None),
        target=None,
        now=now,
        explicit=True,
    )
    return get_watcher("base-images")(request)


def test_moved_tags_in_a_multi_stage_dockerfile_become_one_digest_rotation(
    registry: Registry, tmp_path: Path
) -> None:
    host = registry.host
    node_old = registry.push_index("watch/node", "20", "node old", created=OLD_DATE)
    node_new = registry.push_index(
        "watch/node",
        "20",
        "node new",
        created={"linux/amd64": "2024-05-01T00:00:00Z", "linux/arm64/v8": "2024-05-02T00:00:00Z"},
    )
    tools = registry.push_image("watch/tools", "1", "tools", created=OLD_DATE)
    dockerfile = (
        "# syntax=docker/dockerfile:1\n"
        f"ARG BASE={host}/watch/node:20@{node_old}\n"
        "FROM --platform=linux/arm64 ${BASE} AS build\n"
        f"from {host}/watch/tools:1@{tools} as tools\n"
        "FROM build\n"
        "FROM scratch\n"
    )
    workspace = make_repo(tmp_path / "app", {"deploy/api.Dockerfile": dockerfile})

    plan = watch(workspace)

    (rotation,) = plan.rotations
    assert rotation.kind == "digest" and rotation.branch == "rotation-bot/base-image"
    assert rotation.digests == (
        DigestChange(
            file="deploy/api.Dockerfile",
            line=2,
            image=f"{host}/watch/node",
            tag="20",
            previous_digest=node_old,
            new_digest=node_new,
            previous_created="2024-01-01T00:00:00Z",
            new_created="2024-05-02T00:00:00Z",  # the arm64 image: the stage's --platform
        ),
    )
    assert rotation.new_version.startswith("digests-")
    # the stage reference and scratch are listed, as FROM lines with nothing to pin
    assert [(item.subject, item.reason) for item in plan.skipped] == [
        ("deploy/api.Dockerfile:5 build", "the earlier stage `build`; not an image to pin"),
        ("deploy/api.Dockerfile:6 scratch", "the empty image; nothing to pin"),
    ]
    assert [(pin.name, pin.version) for pin in plan.current_pins] == [
        (f"deploy/api.Dockerfile:3 {host}/watch/node:20", node_old),
        (f"deploy/api.Dockerfile:4 {host}/watch/tools:1", tools),
    ]
    # the same facts give the same fingerprint (idempotent proposals)
    assert watch(workspace).rotations[0].new_version == rotation.new_version


def test_unchanged_tags_plan_nothing(registry: Registry, tmp_path: Path) -> None:
    digest = registry.push_image("watch/same", "1", "same", created=OLD_DATE)
    workspace = make_repo(
        tmp_path / "app", {"Dockerfile": f"FROM {registry.host}/watch/same:1@{digest}\n"}
    )

    plan = watch(workspace)

    assert plan.rotations == () and plan.skipped == ()


def test_one_bad_registry_does_not_stop_the_others(
    registry: Registry, broken: BrokenRegistry, tmp_path: Path
) -> None:
    old = registry.push_image("watch/ok", "1", "ok old", created=OLD_DATE)
    new = registry.push_image("watch/ok", "1", "ok new", created=OLD_DATE)
    nobody = f"127.0.0.1:{free_port()}"
    digest = "sha256:" + "e" * 64
    dockerfile = (
        f"FROM {nobody}/team/app:1@{digest} AS a\n"
        f"FROM {nobody}/team/other:2@{digest} AS b\n"
        f"FROM {registry.host}/watch/ok:1@{old} AS c\n"
        f"FROM {registry.host}/watch/gone:1@{digest} AS d\n"
        f"FROM {broken.host}/acme/app:bad-digest@{digest} AS e\n"
        f"FROM {broken.host}/acme/app:garbage@{digest} AS f\n"
    )
    workspace = make_repo(tmp_path / "app", {"Dockerfile": dockerfile})

    plan = watch(workspace)

    (rotation,) = plan.rotations
    assert [(change.line, change.new_digest) for change in rotation.digests] == [(3, new)]
    reasons = {item.subject.split(" ")[0]: item.reason for item in plan.skipped}
    assert reasons["Dockerfile:1"].startswith("registry unavailable:")
    assert reasons["Dockerfile:2"].startswith("registry unavailable:")
    assert reasons["Dockerfile:4"].startswith("tag not found:")
    assert reasons["Dockerfile:5"].startswith("registry answered invalid data:")
    assert reasons["Dockerfile:6"].startswith("registry answered invalid data:")


def test_minimum_age_and_required_platforms_hold_back_a_new_digest(
    registry: Registry, tmp_path: Path
) -> None:
    young_old = registry.push_index("watch/young", "1", "young old", created=OLD_DATE)
    registry.push_index("watch/young", "1", "young new", created="2024-05-31T12:00:00Z")
    amd_old = registry.push_index("watch/amd", "1", "amd old", created=OLD_DATE)
    registry.push_index("watch/amd", "1", "amd new", platforms=("linux/amd64",), created=OLD_DATE)
    workspace = make_repo(
        tmp_path / "app",
        {
            "Dockerfile": f"FROM {registry.host}/watch/young:1@{young_old}\n"
            f"FROM {registry.host}/watch/amd:1@{amd_old}\n"
        },
    )
    config = (
        "version: 1\nrunbooks:\n  base-image:\n    minimum-release-age: 1d\n"
        "    image-platforms: [linux/amd64, linux/arm64]\n"
    )

    plan = watch(workspace, config)

    assert plan.rotations == ()
    reasons = {item.subject.split(" ")[0]: item.reason for item in plan.skipped}
    assert "younger than the minimum age" in reasons["Dockerfile:1"]
    assert "lacks platform linux/arm64" in reasons["Dockerfile:2"]
    # without the policy, both move
    assert (
        len(
            watch(workspace, "version: 1\nrunbooks:\n  base-image:\n    minimum-release-age: 0\n")
            .rotations[0]
            .digests
        )
        == 2
    )


def test_unpinned_images_are_pinned_only_when_asked(registry: Registry, tmp_path: Path) -> None:
    digest = registry.push_image("watch/unpinned", "3", "unpinned", created=OLD_DATE)
    workspace = make_repo(
        tmp_path / "app", {"Dockerfile": f"FROM {registry.host}/watch/unpinned:3\n"}
    )

    left_alone = watch(workspace)
    pinned = watch(workspace, "version: 1\nrunbooks:\n  base-image:\n    pin-unpinned: true\n")

    assert left_alone.rotations == ()
    assert "pin-unpinned" in left_alone.skipped[0].reason
    (change,) = pinned.rotations[0].digests
    assert (change.previous_digest, change.new_digest) == (None, digest)


def test_no_dockerfiles_and_a_config_that_matches_nothing(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "app", {"README.md": "hi\n"})

    plan = watch(workspace, oci=False)

    assert plan.rotations == () and "no Dockerfile matches" in plan.skipped[0].reason
    with pytest.raises(ManifestError, match="no tracked file matches"):
        watch(workspace, "version: 1\nrunbooks:\n  base-image:\n    dockerfiles: [ci/*.df]\n")


def test_unreadable_and_oversized_dockerfiles_are_skipped_with_the_reason(tmp_path: Path) -> None:
    root = tmp_path / "app"
    root.mkdir()
    (root / "Dockerfile").write_text("FROM scratch\n")
    (root / "latin1.Dockerfile").write_bytes(b"# caf\xe9\nFROM node:20\n")
    (root / "huge.Dockerfile").write_text("FROM node:20\n" + "# padding\n" * 200_000)
    commit_directory(root)

    plan = watch(Workspace.open_local(root), oci=False)  # no registry is asked for anything

    reasons = {item.subject: item.reason for item in plan.skipped}
    assert reasons["latin1.Dockerfile"].startswith("latin1.Dockerfile is not UTF-8 text")
    assert reasons["huge.Dockerfile"].startswith("huge.Dockerfile is 2,000,013 bytes, over ")
    assert "1 MiB cap for Dockerfiles" in reasons["huge.Dockerfile"]
    assert plan.rotations == ()


def test_registries_are_asked_only_when_an_image_needs_it(tmp_path: Path) -> None:
    workspace = make_repo(tmp_path / "app", {"Dockerfile": "FROM node:20\nFROM scratch\n"})

    assert watch(workspace, oci=False).rotations == ()


def test_apply_changes_rewrites_only_digests_and_checks_its_work(tmp_path: Path) -> None:
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    text = f"FROM node:20@{old} AS a\r\nRUN true\r\nFROM node:20@{old}\r\n"
    (tmp_path / "Dockerfile").write_bytes(text.encode())
    change = DigestChange("Dockerfile", 1, "node", "20", old, new)

    assert apply_changes(tmp_path, [change]) == ["Dockerfile"]

    assert (tmp_path / "Dockerfile").read_bytes() == text.replace(
        f"@{old} AS", f"@{new} AS"
    ).encode()
    with pytest.raises(StepFailed, match="changed since planning"):
        apply_changes(tmp_path, [change])  # the old digest is no longer there
    same = DigestChange("Dockerfile", 3, "node", "20", old, old)
    with pytest.raises(StepFailed, match="Expected content to change!"):
        apply_changes(tmp_path, [same])


def test_inside_another_runbook_the_step_resolves_digests_itself(
    registry: Registry, tmp_path: Path
) -> None:
    old = registry.push_image("watch/inside", "1", "inside old", created=OLD_DATE)
    new = registry.push_image("watch/inside", "1", "inside new", created=OLD_DATE)
    workspace = make_repo(
        tmp_path / "app", {"Dockerfile": f"FROM {registry.host}/watch/inside:1@{old}\n"}
    )
    empty = make_repo(tmp_path / "empty", {"package.json": "{}\n"})
    sharp = load_runbook(DEFAULT_RUNBOOKS_DIR / "sharp.yml")
    rotation = Rotation("sharp", "patch", "sharp", "0.33.4", "0.33.5", "rotation-bot/sharp-0.33.5")

    def run(target: Workspace, config: str | None = None) -> tuple[StepResult, set[str], str]:
        repo_config = parse_repo_config(config)
        with target.worktree("test-run") as worktree:
            ctx = StepContext(
                run_id="test-run",
                runbook=sharp,
                repo_config=repo_config,
                runbook_settings=RunbookSettings(),
                plan=cast(Any, None),
                rotation=rotation,
                workspace=target,
                worktree=worktree,
                scratch=tmp_path,
                services=services(),
                npm=cast(Any, None),
                npm_settings=cast(Any, None),
            )
            result = get_step("repin-base-images")(ctx)
            text = (worktree / "Dockerfile").read_text() if ctx.changed_files else ""
        return result, ctx.changed_files, text

    result, changed, text = run(workspace)
    assert result.status == "passed" and changed == {"Dockerfile"}
    assert text == f"FROM {registry.host}/watch/inside:1@{new}\n"
    assert result.evidence["changes"][0]["previous_digest"] == old

    nothing, changed, _ = run(empty)
    assert nothing.status == "skipped" and "no Dockerfile" in nothing.summary and not changed

    disabled, _, _ = run(workspace, "version: 1\nrunbooks:\n  base-image:\n    enabled: false\n")
    assert disabled.status == "skipped" and "disabled" in disabled.summary


def test_the_base_image_runbook_has_a_one_day_default_age() -> None:
    assert runbook().minimum_release_age == timedelta(days=1)
    assert runbook().steps == ("repin-base-images",)


def test_a_digest_without_a_usable_date_ages_from_when_the_bot_first_saw_it(
    registry: Registry, tmp_path: Path
) -> None:
    host = registry.host
    olds = {
        name: registry.push_image(f"undated/{name}", "1", f"{name} old", created=OLD_DATE)
        for name in ("missing", "epoch", "future")
    }
    news = {
        "missing": registry.push_image("undated/missing", "1", "missing new", created=None),
        "epoch": registry.push_image(
            "undated/epoch", "1", "epoch new", created="1970-01-01T00:00:00Z"
        ),
        "future": registry.push_image(
            "undated/future", "1", "future new", created="2999-01-01T00:00:00Z"
        ),
    }
    dockerfile = "".join(
        f"FROM {host}/undated/{name}:1@{digest} AS {name}\n" for name, digest in olds.items()
    )
    workspace = make_repo(tmp_path / "app", {"Dockerfile": dockerfile})
    config = "version: 1\nrunbooks:\n  base-image:\n    minimum-release-age: 1d\n"
    state = Settings(state_dir=tmp_path / "state")

    first = watch(workspace, config, settings=state)

    assert first.rotations == ()
    reasons = {item.subject.split(" ")[0]: item.reason for item in first.skipped}
    assert "has no created date" in reasons["Dockerfile:1"]
    assert "created 1970-01-01, the fixed date of a reproducible build" in reasons["Dockerfile:2"]
    assert "created 2999-01-01 00:00 UTC, in the future" in reasons["Dockerfile:3"]
    for line in ("1", "2", "3"):
        assert (
            "first seen 2024-06-01 00:00 UTC, younger than the minimum age 1 day"
            in (reasons[f"Dockerfile:{line}"])
        )

    # a day and a bit later the recorded sightings (not a new one) make the digests old enough
    later = watch(workspace, config, settings=state, now=NOW + timedelta(days=1, minutes=1))
    (rotation,) = later.rotations
    assert [(change.line, change.new_digest) for change in rotation.digests] == [
        (1, news["missing"]),
        (2, news["epoch"]),
        (3, news["future"]),
    ]
    # a bot with no record of them sees them for the first time then, and waits again
    fresh = watch(
        workspace,
        config,
        settings=Settings(state_dir=tmp_path / "other-state"),
        now=NOW + timedelta(days=1, minutes=1),
    )
    assert fresh.rotations == () and "first seen 2024-06-02 00:01 UTC" in fresh.skipped[0].reason
    # without a minimum age no sighting is needed and none is recorded
    unaged = Settings(state_dir=tmp_path / "unaged")
    assert watch(
        workspace,
        "version: 1\nrunbooks:\n  base-image:\n    minimum-release-age: 0\n",
        settings=unaged,
    ).rotations
    assert not (tmp_path / "unaged").exists()
