"""confirm-lockfile against hand-made lockfiles and the real registry: a copy of sharp that
another package keeps must load the binaries its own version declares."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from bot.errors import VerificationFailed
from bot.models import KeptCopy, PinChange, Project, ProjectRotation, Rotation
from bot.steps.confirm_lockfile import confirm_lockfile
from tests.conftest import FAMILY, pin_names
from tests.support.step_context import make_context
from tests.support.verdaccio import Verdaccio

KEPT = "node_modules/favicons/node_modules/sharp"


class Base:
    """The repository at the base commit, as confirm-lockfile reads it."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)


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
    base = Base({"package-lock.json": lockfile(registry, "0.34.0", nested_binaries=True)})
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
    base = Base({"pnpm-lock.yaml": pnpm_lockfile(registry, "0.34.0")})
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
