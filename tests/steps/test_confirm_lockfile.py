"""confirm-lockfile against hand-made lockfiles and the real registry: each fail-closed check
has a test that fails when the check is removed (the lockfile is written from the registry's own
metadata, then exactly one thing is broken), and a copy of sharp that another package keeps must
load the binaries its own version declares."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.errors import VerificationFailed
from bot.models import KeptCopy, PinChange, Project, ProjectRotation, Rotation
from bot.steps.confirm_lockfile import confirm_lockfile
from bot.steps.registry import get_step
from tests.conftest import FAMILY, pin_names
from tests.support.locked_family import (
    LINUX,
    LINUX_VIPS,
    MUSL,
    PINS,
    family_versions,
    registry_lockfile,
    run_step,
)
from tests.support.step_context import BaseFiles, make_context, rotation_for
from tests.support.verdaccio import Verdaccio

KEPT = "node_modules/favicons/node_modules/sharp"


def family_entries(registry: Verdaccio, under: str, version: str) -> dict[str, Any]:
    """sharp@version at `under` and its configured binaries beside it, as npm locks them."""
    libvips = FAMILY[version]
    published = registry.published
    prefix = f"{under}/node_modules" if under else "node_modules"
    sharp = published[f"sharp@{version}"]
    entries = {
        f"{prefix}/sharp": {
            "version": version,
            "integrity": sharp["dist"]["integrity"],
            "optionalDependencies": sharp["optionalDependencies"],
        }
    }
    for name in pin_names():
        pinned = published[f"{name}@{libvips if 'libvips' in name else version}"]
        entries[f"{prefix}/{name}"] = {
            "version": pinned["version"],
            "integrity": pinned["dist"]["integrity"],
            **{field: pinned[field] for field in ("os", "cpu", "libc") if field in pinned},
        }
    return entries


def lockfile(registry: Verdaccio, root_version: str, *, nested_binaries: bool) -> str:
    """docs/package-lock.json of fixture 07's shape: the root's sharp, and favicons' own
    sharp 0.33.4 (with its binaries nested beside it, or not)."""
    kept = family_entries(registry, "node_modules/favicons", "0.33.4")
    if not nested_binaries:
        kept = {KEPT: kept[KEPT]}
    packages = {
        "": {"dependencies": {"favicons": "^7.2.0", "sharp": f"^{root_version}"}},
        **family_entries(registry, "", root_version),
        "node_modules/favicons": {"version": "7.2.0", "dependencies": {"sharp": "^0.33.4"}},
        **kept,
    }
    return json.dumps({"lockfileVersion": 3, "packages": packages}, indent=2)


def rotation(registry: Verdaccio) -> Rotation:
    pins = tuple(
        PinChange(name, FAMILY["0.34.0"] if "libvips" in name else "0.34.0", version)
        for name in pin_names()
        for version in [FAMILY["0.34.1"] if "libvips" in name else "0.34.1"]
    )
    part = ProjectRotation(
        Project("", "npm", "package-lock.json"),
        "0.34.0",
        "0.34.1",
        pins,
        pinned=False,
        edits=(),
        kept=(KeptCopy(KEPT, "0.33.4", "favicons@7.2.0", "^0.33.4"),),
    )
    return Rotation(
        "sharp",
        "patch",
        "sharp",
        "0.34.0",
        "0.34.1",
        "rotation-bot/sharp-0.34.1",
        pins,
        projects=(part,),
    )


@pytest.mark.parametrize("nested_binaries", [True, False])
def test_a_kept_copy_must_load_its_own_versions_binaries(
    tmp_path: Path, registry: Verdaccio, nested_binaries: bool
) -> None:
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / "package-lock.json").write_text(
        lockfile(registry, "0.34.1", nested_binaries=nested_binaries)
    )
    base = BaseFiles({"package-lock.json": lockfile(registry, "0.34.0", nested_binaries=True)})
    ctx = make_context(
        tmp_path, registry.url, rotation(registry), worktree=worktree, workspace=base
    )

    if nested_binaries:
        result = confirm_lockfile(ctx)
        assert result.status == "passed"
        assert ctx.outputs.lockfile is not None and ctx.outputs.lockfile.changed_outside == 0
        return
    with pytest.raises(VerificationFailed) as failure:
        confirm_lockfile(ctx)
    problems = failure.value.fields["problems"]
    assert (
        f".: {KEPT} (0.33.4) would load @img/sharp-linux-x64 0.34.1 "
        "(node_modules/@img/sharp-linux-x64), built for another sharp; it needs 0.33.4"
    ) in problems
    assert (
        f".: {KEPT} (0.33.4) would load @img/sharp-libvips-linux-x64 1.1.1 "
        "(node_modules/@img/sharp-libvips-linux-x64), built for another sharp; it needs 1.0.2"
    ) in problems


# --- each fail-closed check ----------------------------------------------------------------


def test_confirm_lockfile_passes_a_rotated_lockfile(tmp_path: Path, registry: Verdaccio) -> None:
    result = run_step("confirm-lockfile", tmp_path, registry)

    assert result.status == "passed"
    entries = {e["name"]: e for e in result.evidence["entries"]}
    assert {(e["name"], e["previous_version"], e["new_version"]) for e in entries.values()} == {
        ("sharp", "0.33.4", "0.33.5"),
        (LINUX, "0.33.4", "0.33.5"),
        (LINUX_VIPS, "1.0.2", "1.0.4"),
    }
    assert tuple(entries[LINUX]["libc"]) == ("glibc",)


def _entry(name: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
    return lambda lock: lock["packages"][f"node_modules/{name}"]


def _drop(lock: dict[str, Any]) -> None:
    del lock["packages"][f"node_modules/{LINUX}"]


def _wrong_version(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["version"] = "0.33.6"


def _wrong_libc(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["libc"] = ["musl"]


def _wrong_cpu(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["cpu"] = ["arm64"]


def _wrong_os(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["os"] = ["darwin"]


def _sha1(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["integrity"] = "sha1-2jmj7l5rSw0yVb/vlWAYkK/YBwk="


def _other_integrity(lock: dict[str, Any]) -> None:
    _entry(LINUX)(lock)["integrity"] = _entry(MUSL)(lock)["integrity"]


def _sharp_elsewhere(lock: dict[str, Any]) -> None:
    _entry("sharp")(lock)["version"] = "0.33.4"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_drop, f"{LINUX} is missing from package-lock.json for node_modules/sharp"),
        (_wrong_version, f"node_modules/{LINUX} is 0.33.6, expected 0.33.5"),
        (_wrong_libc, "has libc ['musl'], expected ['glibc']"),
        (_wrong_cpu, "has cpu ['arm64'], expected ['x64']"),
        (_wrong_os, "has os ['darwin'], expected ['linux']"),
        (_sha1, "has no sha512 integrity"),
        (_other_integrity, "integrity differs from the registry's dist.integrity"),
        (_sharp_elsewhere, "package-lock.json has no sharp 0.33.5 entry"),
    ],
    ids=["missing", "version", "libc", "cpu", "os", "sha1", "integrity", "sharp"],
)
def test_confirm_lockfile_fails_on_each_broken_entry(
    tmp_path: Path, registry: Verdaccio, change: Callable[[dict[str, Any]], None], reason: str
) -> None:
    def with_musl(lock: dict[str, Any]) -> None:
        musl = registry_lockfile(registry, {MUSL: "0.33.5"})["packages"][f"node_modules/{MUSL}"]
        lock["packages"][f"node_modules/{MUSL}"] = musl
        change(lock)

    with pytest.raises(VerificationFailed) as caught:
        run_step("confirm-lockfile", tmp_path, registry, change=with_musl)

    assert reason in caught.value.message
    # one broken entry, one problem (moving sharp itself also strands its binaries)
    assert len(caught.value.fields["problems"]) == (4 if reason.endswith("0.33.5 entry") else 1)


def test_confirm_lockfile_wants_a_changed_integrity_when_the_version_changed(
    tmp_path: Path, registry: Verdaccio
) -> None:
    # The base lockfile already had 0.33.5's bytes under 0.33.4: a version bump without new bytes.
    previous = registry_lockfile(registry, family_versions("0.33.4", "0.33.4", "1.0.2"))
    rotated = registry_lockfile(registry, family_versions("0.33.5", "0.33.5", "1.0.4"))
    previous["packages"][f"node_modules/{LINUX}"]["integrity"] = rotated["packages"][
        f"node_modules/{LINUX}"
    ]["integrity"]
    (tmp_path / "package-lock.json").write_text(json.dumps(rotated))
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", PINS),
        workspace=BaseFiles({"package-lock.json": json.dumps(previous)}),
    )

    with pytest.raises(VerificationFailed, match="integrity did not change although the version"):
        get_step("confirm-lockfile")(ctx)


def test_confirm_lockfile_refuses_new_bytes_under_an_unchanged_version(
    tmp_path: Path, registry: Verdaccio
) -> None:
    previous = registry_lockfile(registry, family_versions("0.33.4", "0.33.4", "1.0.4"))
    previous["packages"][f"node_modules/{LINUX_VIPS}"]["integrity"] = "sha512-" + "A" * 86 + "=="
    (tmp_path / "package-lock.json").write_text(
        json.dumps(registry_lockfile(registry, family_versions("0.33.5", "0.33.5", "1.0.4")))
    )
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", {LINUX: ("0.33.4", "0.33.5"), LINUX_VIPS: ("1.0.4", "1.0.4")}),
        workspace=BaseFiles({"package-lock.json": json.dumps(previous)}),
    )

    with pytest.raises(VerificationFailed, match="integrity changed although 1.0.4 did not"):
        get_step("confirm-lockfile")(ctx)


def pnpm_lockfile(registry: Verdaccio, version: str, imgkit: str = "1.0.0") -> str:
    """A pnpm v9 lockfile: sharp `version` and its binaries, and imgkit, which takes sharp as a
    peer, so its snapshot key names the sharp it sees (`imgkit@1.0.0(sharp@…)`)."""
    published = registry.published
    binaries = {
        name: FAMILY[version] if "libvips" in name else version for name in sorted(pin_names())
    }
    packages: dict[str, Any] = {
        f"imgkit@{imgkit}": {
            "resolution": {"integrity": f"sha512-imgkit-{imgkit}"},
            "peerDependencies": {"sharp": "*"},
        },
        f"sharp@{version}": {
            "resolution": {"integrity": published[f"sharp@{version}"]["dist"]["integrity"]}
        },
    }
    for name, pinned in binaries.items():
        manifest = published[f"{name}@{pinned}"]
        packages[f"{name}@{pinned}"] = {
            "resolution": {"integrity": manifest["dist"]["integrity"]},
            **{field: manifest[field] for field in ("os", "cpu", "libc") if field in manifest},
        }
    lock = {
        "lockfileVersion": "9.0",
        "importers": {
            ".": {
                "dependencies": {
                    "imgkit": {"specifier": imgkit, "version": f"{imgkit}(sharp@{version})"},
                    "sharp": {"specifier": f"^{version}", "version": version},
                }
            }
        },
        "packages": packages,
        "snapshots": {
            f"imgkit@{imgkit}(sharp@{version})": {"dependencies": {"sharp": version}},
            f"sharp@{version}": {"optionalDependencies": binaries},
            **{f"{name}@{pinned}": {} for name, pinned in binaries.items()},
        },
    }
    return yaml.safe_dump(lock, sort_keys=False)


@pytest.mark.parametrize("imgkit", ["1.0.0", "1.0.1"])
def test_a_package_whose_pnpm_key_names_sharp_as_a_peer_is_churn_only_when_it_changes(
    tmp_path: Path, registry: Verdaccio, imgkit: str
) -> None:
    worktree = tmp_path / "worktree"
    worktree.mkdir()
    (worktree / "pnpm-lock.yaml").write_text(pnpm_lockfile(registry, "0.34.1", imgkit))
    base = BaseFiles({"pnpm-lock.yaml": pnpm_lockfile(registry, "0.34.0")})
    plan = rotation(registry)
    part = replace(plan.projects[0], project=Project("", "pnpm", "pnpm-lock.yaml"), kept=())
    ctx = make_context(
        tmp_path, registry.url, replace(plan, projects=(part,)), worktree=worktree, workspace=base
    )

    if imgkit == "1.0.0":  # only the peer context in its key changed
        result = confirm_lockfile(ctx)
        assert result.status == "passed"
        assert ctx.outputs.lockfile is not None and ctx.outputs.lockfile.changed_outside == 0
        return
    with pytest.raises(VerificationFailed) as failure:
        confirm_lockfile(ctx)
    assert failure.value.fields["problems"] == [
        ".: 2 lockfile entries outside sharp's dependency closure changed (imgkit@1.0.0, "
        "imgkit@1.0.1); refusing a rotation that moves unrelated packages"
    ]
