"""The pure planner: targets, lines, prereleases, age, explicit targets, pin derivation, and the
exact manifest edits for each place a repository keeps sharp and its pins."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import UsageError
from bot.manifests.lockfile import parse_package_lock
from bot.manifests.package_json import PackageJson
from bot.models import ManifestEdit, Project
from bot.planning.npm_family import FamilyPolicy, ProjectInput, line_of, plan_family
from bot.sources.npm.models import Packument

NOW = datetime(2026, 11, 22, tzinfo=UTC)
NAMES = ("@img/sharp-linux-x64", "@img/sharp-libvips-linux-x64")
FAMILY = {
    "0.33.4": ("1.0.2", 100),
    "0.33.5": ("1.0.4", 50),
    "0.33.6-rc.1": ("1.0.5", 9),
    "0.34.0": ("1.1.0", 40),
    "0.34.2": ("1.1.2", 30),
    "0.35.0": ("1.2.0", 20),
    "0.35.1-rc.0": ("1.2.1", 1),
}


def packument(
    releases: Mapping[str, tuple[str, int]] = FAMILY, deprecated: set[str] = frozenset()
) -> Packument:
    """sharp releases: version → (libvips, age in days)."""
    versions: dict[str, Any] = {}
    times = {}
    for version, (libvips, age) in releases.items():
        versions[version] = {
            "name": "sharp",
            "version": version,
            "dist": {
                "tarball": f"https://r.test/sharp-{version}.tgz",
                "integrity": "sha512-" + "A" * 86 + "==",
            },
            "optionalDependencies": {NAMES[0]: version, NAMES[1]: libvips},
            **({"deprecated": "do not use"} if version in deprecated else {}),
        }
        times[version] = (NOW - timedelta(days=age)).isoformat()
    return Packument("sharp", {"versions": versions, "time": times}, host="https://r.test")


def locked(
    sharp: str = "0.33.4",
    libvips: str = "1.0.2",
    *,
    extra: Mapping[str, Any] | None = None,
    root: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A package-lock.json with the root depending on sharp and sharp on its binaries."""
    return {
        "lockfileVersion": 3,
        "packages": {
            "": root if root is not None else {"dependencies": {"sharp": sharp}},
            "node_modules/sharp": {
                "version": sharp,
                "optionalDependencies": {NAMES[0]: sharp, NAMES[1]: libvips},
            },
            f"node_modules/{NAMES[0]}": {"version": sharp},
            f"node_modules/{NAMES[1]}": {"version": libvips},
            **(extra or {}),
        },
    }


def project_input(
    manifest: Mapping[str, Any] | str,
    lock: Mapping[str, Any] | None = None,
    members: Mapping[str, Mapping[str, Any]] | None = None,
) -> ProjectInput:
    text = manifest if isinstance(manifest, str) else json.dumps(manifest, indent=2)
    manifests = {"package.json": PackageJson.parse(text)}
    for directory, member in (members or {}).items():
        path = f"{directory}/package.json"
        manifests[path] = PackageJson.parse(json.dumps(member), source=path)
    return ProjectInput(
        Project("", "npm", "package-lock.json", tuple(members or ())),
        manifests,
        parse_package_lock(json.dumps(lock or locked())),
    )


CLASSIC = {
    "dependencies": {"sharp": "0.33.4"},
    "overrides": {NAMES[0]: "0.33.4", NAMES[1]: "1.0.2"},
}


def plan(
    *inputs: ProjectInput,
    releases: Packument | None = None,
    age: timedelta = timedelta(0),
    **policy: Any,
) -> Any:
    target = policy.pop("target", None)
    if policy.pop("policy_templates", False):
        policy["pin_templates"] = ("@img/sharp-{platform}", "@img/sharp-libvips-{platform}")
    return plan_family(
        repo="r",
        base_commit="c",
        inputs=inputs or (project_input(CLASSIC),),
        parent=releases or packument(),
        policy=FamilyPolicy("sharp", "sharp", NAMES, age, **policy),
        now=NOW,
        target=target,
    )


def edits(rotation: Any) -> list[tuple[str, str, str, str]]:
    return [
        (".".join(edit.location), edit.kind, edit.previous, edit.new)
        for part in rotation.projects
        for edit in part.edits
    ]


def test_lines_treat_minor_bumps_in_0x_as_major() -> None:
    assert line_of("0.33.5") == (0, 33)
    assert line_of("1.4.2") == (1,)
    assert line_of("0.34.0") != line_of("0.33.9")


def test_patch_target_is_newest_on_the_line_and_major_is_newest_of_the_next_line() -> None:
    result = plan()
    assert [(r.kind, r.new_version) for r in result.rotations] == [
        ("patch", "0.33.5"),
        ("major", "0.34.2"),
    ]
    patch = result.rotations[0]
    assert [(p.name, p.previous_version, p.new_version) for p in patch.pins] == [
        ("@img/sharp-linux-x64", "0.33.4", "0.33.5"),
        ("@img/sharp-libvips-linux-x64", "1.0.2", "1.0.4"),
    ]
    assert patch.branch == "rotation-bot/sharp-0.33.5"
    assert edits(patch) == [
        ("dependencies.sharp", "value", "0.33.4", "0.33.5"),
        ("overrides.@img/sharp-linux-x64", "value", "0.33.4", "0.33.5"),
        ("overrides.@img/sharp-libvips-linux-x64", "value", "1.0.2", "1.0.4"),
    ]


def test_the_newest_line_is_visible_and_major_latest_chooses_it() -> None:
    result = plan()
    (note,) = [item for item in result.skipped if item.subject == "sharp@0.35.0"]
    assert "newest line" in note.reason and "major: latest" in note.reason
    latest = plan(major="latest")
    assert [r.new_version for r in latest.rotations] == ["0.33.5", "0.35.0"]
    assert [r.new_version for r in plan(major="off").rotations] == ["0.33.5"]


def test_prereleases_and_deprecated_versions_are_never_targets() -> None:
    result = plan(
        releases=packument(
            {"0.33.4": ("1.0.2", 10), "0.33.5-rc.1": ("1.0.3", 5), "0.33.5": ("1.0.4", 5)},
            deprecated={"0.33.5"},
        )
    )
    assert result.rotations == ()
    assert any("deprecated" in item.reason for item in result.skipped)


def test_young_release_is_skipped_and_the_older_one_on_the_line_taken() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30), "0.33.5": ("1.0.4", 10), "0.33.6": ("1.0.4", 1)})
    result = plan(releases=releases, age=timedelta(days=3))
    assert [r.new_version for r in result.rotations] == ["0.33.5"]
    (skip,) = result.skipped
    assert skip.subject == "sharp@0.33.6" and "younger than" in skip.reason


def test_explicit_target_must_be_a_stable_newer_release() -> None:
    result = plan(target="0.35.0")
    assert [(r.kind, r.new_version) for r in result.rotations] == [("major", "0.35.0")]
    with pytest.raises(UsageError, match="0.35.1-rc.0 is not a valid target"):
        plan(target="0.35.1-rc.0")


def test_up_to_date_repository_has_nothing_to_rotate() -> None:
    assert plan(releases=packument({"0.33.4": ("1.0.2", 30)})).rotations == ()


def test_pins_disagreeing_with_the_locked_parent_are_noted_and_realigned() -> None:
    manifest = {
        "dependencies": {"sharp": "0.33.4"},
        "overrides": {NAMES[0]: "0.33.4", NAMES[1]: "1.0.1"},
    }
    result = plan(project_input(manifest))
    (status,) = result.projects
    assert "sharp 0.33.4 needs 1.0.2" in status.notes[0]
    assert ("overrides.@img/sharp-libvips-linux-x64", "value", "1.0.1", "1.0.4") in edits(
        result.rotations[0]
    )


def test_missing_platform_in_target_is_skipped_with_reason() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30), "0.33.5": ("1.0.4", 10)})
    del releases._versions["0.33.5"]["optionalDependencies"]["@img/sharp-libvips-linux-x64"]
    result = plan(releases=releases)
    assert result.rotations == ()
    assert "does not publish @img/sharp-libvips-linux-x64" in result.skipped[0].reason


def test_caret_pins_in_optional_dependencies_keep_their_caret() -> None:
    manifest = {
        "dependencies": {"sharp": "^0.33.4"},
        "optionalDependencies": {NAMES[0]: "^0.33.4", NAMES[1]: "^1.0.2"},
    }
    (patch, _) = plan(project_input(manifest)).rotations
    assert edits(patch) == [
        ("dependencies.sharp", "value", "^0.33.4", "^0.33.5"),
        ("optionalDependencies.@img/sharp-linux-x64", "value", "^0.33.4", "^0.33.5"),
        ("optionalDependencies.@img/sharp-libvips-linux-x64", "value", "^1.0.2", "^1.0.4"),
    ]


def test_a_caret_that_would_admit_a_newer_release_is_pinned_exactly() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30), "0.33.5": ("1.0.4", 10), "0.33.6": ("1.0.4", 1)})
    manifest = {
        "dependencies": {"sharp": "^0.33.4"},
        "overrides": {NAMES[0]: "0.33.4", NAMES[1]: "1.0.2"},
    }
    (patch,) = plan(project_input(manifest), releases=releases, age=timedelta(days=3)).rotations
    assert ("dependencies.sharp", "value", "^0.33.4", "0.33.5") in edits(patch)


def test_dollar_references_are_kept_and_the_declaration_moves() -> None:
    manifest = {"devDependencies": {"sharp": "0.33.4"}, "overrides": {"sharp": "$sharp"}}
    (patch, _) = plan(
        project_input(manifest, locked(root={"devDependencies": {"sharp": "0.33.4"}}))
    ).rotations
    assert edits(patch) == [("devDependencies.sharp", "value", "0.33.4", "0.33.5")]
    assert patch.projects[0].pinned is False


def test_an_override_of_a_direct_dependency_moves_with_it() -> None:
    manifest = {"dependencies": {"sharp": "^0.33.4"}, "overrides": {"sharp": "^0.33.4"}}
    (patch, _) = plan(project_input(manifest)).rotations
    assert edits(patch) == [
        ("dependencies.sharp", "value", "^0.33.4", "^0.33.5"),
        ("overrides.sharp", "value", "^0.33.4", "^0.33.5"),
    ]


def test_sharp_forced_through_a_nested_override_is_managed_there() -> None:
    manifest = {"dependencies": {"next": "15.0.0"}, "overrides": {"next": {"sharp": "0.33.4"}}}
    lock = locked(
        root={"dependencies": {"next": "15.0.0"}},
        extra={
            "node_modules/next": {"version": "15.0.0", "optionalDependencies": {"sharp": "^0.33.4"}}
        },
    )
    result = plan(project_input(manifest, lock))
    (status,) = result.projects
    assert status.current_version == "0.33.4" and status.kept == ()
    assert edits(result.rotations[0]) == [("overrides.next.sharp", "value", "0.33.4", "0.33.5")]


def test_sharp_only_through_a_framework_is_skipped_honestly() -> None:
    lock = locked(
        root={"dependencies": {"next": "15.0.0"}},
        extra={
            "node_modules/next": {"version": "15.0.0", "optionalDependencies": {"sharp": "^0.33.4"}}
        },
    )
    result = plan(project_input({"dependencies": {"next": "15.0.0"}}, lock))
    assert result.rotations == ()
    (skip,) = result.skipped
    assert "sharp arrives only through next@15.0.0; not managed here" in skip.reason
    assert "does not depend" not in skip.reason


def test_a_copy_held_by_another_package_stays_and_is_listed() -> None:
    lock = locked(
        root={"dependencies": {"sharp": "0.33.4", "transformers": "2.0.0"}},
        extra={
            "node_modules/transformers": {"version": "2.0.0", "dependencies": {"sharp": "^0.32.0"}},
            "node_modules/transformers/node_modules/sharp": {"version": "0.32.6"},
        },
    )
    manifest = {"dependencies": {"sharp": "0.33.4", "transformers": "2.0.0"}}
    result = plan(project_input(manifest, lock))
    (status,) = result.projects
    (kept,) = status.kept
    assert (kept.version, kept.holder, kept.spec) == ("0.32.6", "transformers@2.0.0", "^0.32.0")
    assert result.rotations[0].projects[0].kept == (kept,)


def test_flat_pins_that_would_reach_a_kept_copy_of_another_version_refuse_the_project() -> None:
    lock = locked(
        root={"dependencies": {"sharp": "0.33.4", "next": "15.0.0"}},
        extra={
            "node_modules/next": {"version": "15.0.0", "dependencies": {"sharp": "0.33.4"}},
            "node_modules/next/node_modules/sharp": {"version": "0.33.4"},
        },
    )
    manifest = {**CLASSIC, "dependencies": {"sharp": "0.33.4", "next": "15.0.0"}}
    result = plan(project_input(manifest, lock))
    assert result.rotations == ()
    assert any("apply to every copy" in item.reason for item in result.skipped)


def test_workspace_member_declaration_and_root_pins_move_together() -> None:
    manifest = {
        "workspaces": ["packages/*"],
        "optionalDependencies": {NAMES[0]: "0.33.4", NAMES[1]: "1.0.2"},
    }
    lock = locked(
        root={"optionalDependencies": {NAMES[0]: "0.33.4", NAMES[1]: "1.0.2"}},
        extra={"packages/image": {"dependencies": {"sharp": "0.33.4"}}},
    )
    (patch, _) = plan(
        project_input(manifest, lock, {"packages/image": {"dependencies": {"sharp": "0.33.4"}}})
    ).rotations
    assert [
        (edit.manifest, ".".join(edit.location), edit.new) for edit in patch.projects[0].edits
    ] == [
        ("packages/image/package.json", "dependencies.sharp", "0.33.5"),
        ("package.json", "optionalDependencies.@img/sharp-linux-x64", "0.33.5"),
        ("package.json", "optionalDependencies.@img/sharp-libvips-linux-x64", "1.0.4"),
    ]


def test_unpinned_projects_get_pins_only_when_asked() -> None:
    manifest = {"dependencies": {"sharp": "0.33.4"}}
    (patch, _) = plan(project_input(manifest)).rotations
    assert edits(patch) == [("dependencies.sharp", "value", "0.33.4", "0.33.5")]
    (pinned, _) = plan(project_input(manifest), add_pins=True).rotations
    (insert,) = [edit for edit in pinned.projects[0].edits if edit.kind == "insert"]
    assert insert == ManifestEdit(
        "package.json",
        ("overrides",),
        "insert",
        "",
        json.dumps({NAMES[0]: "0.33.5", NAMES[1]: "1.0.4"}),
    )


def test_allow_scripts_entries_naming_the_version_are_renamed() -> None:
    manifest = {**CLASSIC, "allowScripts": {"sharp@0.33.4": True, "esbuild@0.25.0": True}}
    (patch, _) = plan(project_input(manifest)).rotations
    assert ("allowScripts.sharp@0.33.4", "key", "sharp@0.33.4", "sharp@0.33.5") in edits(patch)


def test_projects_on_different_lines_share_one_proposal_per_target() -> None:
    old = project_input(CLASSIC)
    newer_manifest = {
        "dependencies": {"sharp": "0.34.0"},
        "overrides": {NAMES[0]: "0.34.0", NAMES[1]: "1.1.0"},
    }
    newer = ProjectInput(
        Project("web", "npm", "web/package-lock.json"),
        {
            "web/package.json": PackageJson.parse(
                json.dumps(newer_manifest), source="web/package.json"
            )
        },
        parse_package_lock(json.dumps(locked("0.34.0", "1.1.0"))),
    )
    result = plan(old, newer)
    by_version = {r.new_version: r for r in result.rotations}
    assert sorted(by_version) == ["0.33.5", "0.34.2", "0.35.0"]
    assert [p.project.label for p in by_version["0.34.2"].projects] == [".", "web"]
    assert by_version["0.34.2"].kind == "major"
    assert [p.project.label for p in by_version["0.33.5"].projects] == ["."]
    assert [p.project.label for p in by_version["0.35.0"].projects] == ["web"]


def test_a_stale_lockfile_is_named_as_such() -> None:
    result = plan(project_input({"dependencies": {"left-pad": "1.3.0"}}, locked()))
    (skip,) = result.skipped
    assert (
        "says the project depends on sharp, but no package.json of it declares sharp" in skip.reason
    )
    assert "run npm install and commit it" in skip.reason


def test_a_partly_pinned_project_keeps_its_pins_and_gets_none_added() -> None:
    manifest = {
        "workspaces": ["client"],
        "optionalDependencies": {NAMES[0]: "0.33.4", "@rollup/rollup-linux-x64-musl": "4.62.0"},
    }
    lock = locked(
        root={"optionalDependencies": {NAMES[0]: "0.33.4"}},
        extra={"client": {"devDependencies": {"sharp": "^0.33.4"}}},
    )
    member = {"client": {"devDependencies": {"sharp": "^0.33.4"}}}
    (patch, _) = plan(project_input(manifest, lock, member)).rotations
    (part,) = patch.projects
    assert [(e.manifest, ".".join(e.location), e.kind, e.new) for e in part.edits] == [
        ("client/package.json", "devDependencies.sharp", "value", "^0.33.5"),
        ("package.json", "optionalDependencies.@img/sharp-linux-x64", "value", "0.33.5"),
    ]
    assert part.unpinned == (NAMES[1],)
    # the pin `pin: true` would add goes beside the existing one, and only then is written
    assert part.suggested == (
        ManifestEdit("package.json", ("optionalDependencies", NAMES[1]), "insert", "", "1.0.4"),
    )
    (pinned, _) = plan(project_input(manifest, lock, member), add_pins=True).rotations
    assert part.suggested[0] in pinned.projects[0].edits
    assert pinned.projects[0].unpinned == () and pinned.projects[0].suggested == ()


def test_binaries_pinned_without_sharp_are_rotated_from_the_registry() -> None:
    manifest = {"optionalDependencies": {"@img/sharp-darwin-arm64": "^0.33.4", NAMES[0]: "^0.33.4"}}
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"optionalDependencies": manifest["optionalDependencies"]},
            f"node_modules/{NAMES[0]}": {
                "version": "0.33.4",
                "optionalDependencies": {NAMES[1]: "1.0.2"},
            },
            f"node_modules/{NAMES[1]}": {"version": "1.0.2"},
            "node_modules/@img/sharp-darwin-arm64": {"version": "0.33.4"},
        },
    }
    releases = packument()
    for version in releases._versions.values():
        version["optionalDependencies"]["@img/sharp-darwin-arm64"] = version["version"]
    result = plan(project_input(manifest, lock), releases=releases, policy_templates=True)
    (status,) = result.projects
    assert status.current_version == "0.33.4"
    assert "sharp is not installed by this project" in status.notes[0]
    patch = result.rotations[0]
    (part,) = patch.projects
    assert part.installs_parent is False
    assert edits(patch) == [
        ("optionalDependencies.@img/sharp-darwin-arm64", "value", "^0.33.4", "^0.33.5"),
        ("optionalDependencies.@img/sharp-linux-x64", "value", "^0.33.4", "^0.33.5"),
    ]
    assert ("@img/sharp-darwin-arm64", "0.33.4", "0.33.5") in [
        (pin.name, pin.previous_version, pin.new_version) for pin in part.pins
    ]
    assert "@img/sharp-darwin-arm64" in [pin.name for pin in patch.pins]


def test_pins_without_sharp_at_versions_no_release_declares_are_refused_by_name() -> None:
    manifest = {"optionalDependencies": {NAMES[0]: "0.30.0"}}
    lock = {
        "lockfileVersion": 3,
        "packages": {
            "": {"optionalDependencies": {NAMES[0]: "0.30.0"}},
            f"node_modules/{NAMES[0]}": {"version": "0.30.0"},
        },
    }
    result = plan(project_input(manifest, lock))
    assert result.rotations == ()
    (skip,) = result.skipped
    assert skip.subject == "."
    assert "package.json pins sharp's binaries (@img/sharp-linux-x64), but no sharp release" in (
        skip.reason
    )


def test_a_floor_keeps_its_kind_and_a_nested_override_is_not_an_eoverride() -> None:
    manifest = {
        "dependencies": {"next": "15.0.0", "sharp": "^0.33.4"},
        "overrides": {"postcss": "8.5.10", "next": {"sharp": ">=0.33.4"}},
    }
    lock = locked(
        root={"dependencies": {"next": "15.0.0", "sharp": "^0.33.4"}},
        extra={
            "node_modules/next": {"version": "15.0.0", "optionalDependencies": {"sharp": "^0.33.4"}}
        },
    )
    (patch, _) = plan(project_input(manifest, lock)).rotations
    assert edits(patch) == [
        ("dependencies.sharp", "value", "^0.33.4", "^0.33.5"),
        ("overrides.next.sharp", "value", ">=0.33.4", ">=0.33.5"),
    ]


def test_a_floor_alone_would_install_the_newest_release_and_is_refused() -> None:
    manifest = {"dependencies": {"sharp": ">=0.33.4"}}
    result = plan(project_input(manifest, locked(root=manifest)))
    reasons = [item.reason for item in result.skipped]
    assert any(
        "is a floor (>=0.33.5): npm would install sharp 0.35.0, not 0.33.5" in r for r in reasons
    )


def test_an_override_keyed_with_a_selector_moves_with_the_dependency() -> None:
    manifest = {"dependencies": {"sharp": "^0.33.4"}, "overrides": {"sharp@0.33": "^0.33.4"}}
    (patch, _) = plan(project_input(manifest)).rotations
    assert edits(patch) == [
        ("dependencies.sharp", "value", "^0.33.4", "^0.33.5"),
        ("overrides.sharp@0.33", "value", "^0.33.4", "^0.33.5"),
    ]


def test_a_pinned_platform_the_target_drops_refuses_the_project() -> None:
    manifest = {**CLASSIC, "optionalDependencies": {"@img/sharp-win32-x64": "0.33.4"}}
    result = plan(project_input(manifest), policy_templates=True, major="off")
    assert result.rotations == ()
    assert any(
        "optionalDependencies.@img/sharp-win32-x64 pins @img/sharp-win32-x64, which sharp@0.33.5 "
        "does not publish" in item.reason
        for item in result.skipped
    )
