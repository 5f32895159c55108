"""The pure planner: targets, lines, prereleases, age, explicit targets, pin derivation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from bot.errors import ManifestError, UsageError
from bot.manifests.lockfile import Lockfile
from bot.manifests.package_json import PackageJson
from bot.planning.npm_family import FamilyPolicy, line_of, plan_family
from bot.sources.npm import Packument

NOW = datetime(2026, 11, 22, tzinfo=UTC)
NAMES = ("@img/sharp-linux-x64", "@img/sharp-libvips-linux-x64")


def packument(
    releases: dict[str, tuple[str, int]], deprecated: set[str] = frozenset()
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
            "optionalDependencies": {
                "@img/sharp-linux-x64": version,
                "@img/sharp-libvips-linux-x64": libvips,
            },
            **({"deprecated": "do not use"} if version in deprecated else {}),
        }
        times[version] = (NOW - timedelta(days=age)).isoformat()
    return Packument("sharp", {"versions": versions, "time": times}, host="https://r.test")


def project(version: str = "0.33.4", libvips: str = "1.0.2") -> tuple[PackageJson, Lockfile]:
    manifest = {
        "dependencies": {"sharp": version},
        "overrides": {NAMES[0]: version, NAMES[1]: libvips},
    }
    lock = {"lockfileVersion": 3, "packages": {"": {}, "node_modules/sharp": {"version": version}}}
    return PackageJson.parse(json.dumps(manifest)), Lockfile.parse(json.dumps(lock))


def plan(releases: packument, age: timedelta = timedelta(0), **kwargs: Any) -> Any:
    package_json, lockfile = kwargs.pop("project", project())
    return plan_family(
        repo="r",
        base_commit="c",
        package_json=package_json,
        lockfile=lockfile,
        parent=releases,
        policy=FamilyPolicy("sharp", "sharp", NAMES, age),
        now=NOW,
        **kwargs,
    )


FAMILY = {
    "0.33.4": ("1.0.2", 100),
    "0.33.5": ("1.0.4", 50),
    "0.33.6-rc.1": ("1.0.5", 9),
    "0.34.0": ("1.1.0", 40),
    "0.34.2": ("1.1.2", 30),
    "0.35.0": ("1.2.0", 20),
    "0.35.1-rc.0": ("1.2.1", 1),
}


def test_lines_treat_minor_bumps_in_0x_as_major() -> None:
    assert line_of("0.33.5") == (0, 33)
    assert line_of("1.4.2") == (1,)
    assert line_of("0.34.0") != line_of("0.33.9")


def test_patch_target_is_newest_on_the_line_and_major_is_newest_of_the_next_line() -> None:
    result = plan(packument(FAMILY))
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


def test_prereleases_and_deprecated_versions_are_never_targets() -> None:
    result = plan(
        packument(
            {"0.33.4": ("1.0.2", 10), "0.33.5-rc.1": ("1.0.3", 5), "0.33.5": ("1.0.4", 5)},
            deprecated={"0.33.5"},
        )
    )
    assert result.rotations == ()
    assert any("deprecated" in item.reason for item in result.skipped)


def test_young_release_is_skipped_and_the_older_one_on_the_line_taken() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30), "0.33.5": ("1.0.4", 10), "0.33.6": ("1.0.4", 1)})
    result = plan(releases, age=timedelta(days=3))
    assert [r.new_version for r in result.rotations] == ["0.33.5"]
    (skip,) = result.skipped
    assert skip.subject == "sharp@0.33.6" and "younger than" in skip.reason


def test_explicit_target_must_be_a_stable_newer_release() -> None:
    result = plan(packument(FAMILY), target="0.35.0")
    assert [(r.kind, r.new_version) for r in result.rotations] == [("major", "0.35.0")]
    with pytest.raises(UsageError, match="0.35.1-rc.0 is not a valid target"):
        plan(packument(FAMILY), target="0.35.1-rc.0")


def test_up_to_date_repository_has_nothing_to_rotate() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30)})
    assert plan(releases).rotations == ()


def test_overrides_disagreeing_with_the_locked_parent_are_refused() -> None:
    with pytest.raises(ManifestError, match="overrides pin @img/sharp-libvips-linux-x64 1.0.1"):
        plan(packument(FAMILY), project=project("0.33.4", "1.0.1"))


def test_missing_platform_in_target_is_skipped_with_reason() -> None:
    releases = packument({"0.33.4": ("1.0.2", 30), "0.33.5": ("1.0.4", 10)})
    del releases._versions["0.33.5"]["optionalDependencies"]["@img/sharp-libvips-linux-x64"]
    result = plan(releases)
    assert result.rotations == ()
    assert "does not publish @img/sharp-libvips-linux-x64" in result.skipped[0].reason
