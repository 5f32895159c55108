"""The `confirm-lockfile` and `verify-tarballs` steps against the real Verdaccio family.

Each fail-closed check of the two steps has a test here that fails when the check is removed:
the lockfile is written from the registry's own metadata, then exactly one thing is broken.
"""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from bot.errors import VerificationFailed
from bot.sources.http import HttpSource
from bot.sources.npm.registry import NpmRegistry
from bot.sources.npm.settings import NpmSettings
from bot.steps.registry import StepContext, get_step
from tests.support.step_context import make_context, rotation_for
from tests.support.verdaccio import Verdaccio

LINUX = "@img/sharp-linux-x64"
LINUX_VIPS = "@img/sharp-libvips-linux-x64"
MUSL = "@img/sharp-linuxmusl-x64"
PINS = {LINUX: ("0.33.4", "0.33.5"), LINUX_VIPS: ("1.0.2", "1.0.4")}


class Workspace:
    """The part of `bot.workspace` the steps read: the base branch's files."""

    def __init__(self, files: Mapping[str, str]) -> None:
        self.files = dict(files)

    def read_text(self, path: str) -> str | None:
        return self.files.get(path)


def lockfile(registry: Verdaccio, versions: Mapping[str, str]) -> dict[str, Any]:
    """A v3 package-lock.json locking `versions`, fields as the registry publishes them."""
    npm = NpmRegistry(NpmSettings(registry=registry.url), HttpSource(attempts=1))
    packages: dict[str, Any] = {"": {"name": "app", "dependencies": {"sharp": "^0.33.0"}}}
    for name, version in versions.items():
        manifest = npm.packument(name).manifest(version)
        entry: dict[str, Any] = {
            "version": version,
            "resolved": manifest.dist.tarball,
            "integrity": manifest.dist.integrity,
        }
        for field in ("os", "cpu", "libc"):
            if getattr(manifest, field):
                entry[field] = list(getattr(manifest, field))
        if manifest.optional_dependencies:
            entry["optionalDependencies"] = dict(manifest.optional_dependencies)
        packages[f"node_modules/{name}"] = entry
    return {"name": "app", "lockfileVersion": 3, "requires": True, "packages": packages}


def _versions(sharp: str, linux: str, vips: str) -> dict[str, str]:
    return {"sharp": sharp, LINUX: linux, LINUX_VIPS: vips}


def run(
    step: str,
    tmp_path: Path,
    registry: Verdaccio,
    *,
    change: Callable[[dict[str, Any]], None] = lambda lock: None,
    previous: Mapping[str, str] | None = None,
    pins: Mapping[str, tuple[str | None, str]] = PINS,
    tamper: Callable[[StepContext], None] | None = None,
) -> Any:
    new = lockfile(registry, _versions("0.33.5", "0.33.5", "1.0.4"))
    change(new)
    (tmp_path / "package-lock.json").write_text(json.dumps(new))
    old = lockfile(registry, previous or _versions("0.33.4", "0.33.4", "1.0.2"))
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", pins),
        workspace=Workspace({"package-lock.json": json.dumps(old)}),
    )
    if step == "verify-tarballs":
        get_step("confirm-lockfile")(ctx)
        if tamper is not None:
            tamper(ctx)
    return get_step(step)(ctx)


def test_confirm_lockfile_passes_a_rotated_lockfile(tmp_path: Path, registry: Verdaccio) -> None:
    result = run("confirm-lockfile", tmp_path, registry)

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
        musl = lockfile(registry, {MUSL: "0.33.5"})["packages"][f"node_modules/{MUSL}"]
        lock["packages"][f"node_modules/{MUSL}"] = musl
        change(lock)

    with pytest.raises(VerificationFailed) as caught:
        run("confirm-lockfile", tmp_path, registry, change=with_musl)

    assert reason in caught.value.message
    # one broken entry, one problem (moving sharp itself also strands its binaries)
    assert len(caught.value.fields["problems"]) == (4 if reason.endswith("0.33.5 entry") else 1)


def test_confirm_lockfile_wants_a_changed_integrity_when_the_version_changed(
    tmp_path: Path, registry: Verdaccio
) -> None:
    # The base lockfile already had 0.33.5's bytes under 0.33.4: a version bump without new bytes.
    previous = lockfile(registry, _versions("0.33.4", "0.33.4", "1.0.2"))
    rotated = lockfile(registry, _versions("0.33.5", "0.33.5", "1.0.4"))
    previous["packages"][f"node_modules/{LINUX}"]["integrity"] = rotated["packages"][
        f"node_modules/{LINUX}"
    ]["integrity"]
    (tmp_path / "package-lock.json").write_text(json.dumps(rotated))
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", PINS),
        workspace=Workspace({"package-lock.json": json.dumps(previous)}),
    )

    with pytest.raises(VerificationFailed, match="integrity did not change although the version"):
        get_step("confirm-lockfile")(ctx)


def test_confirm_lockfile_refuses_new_bytes_under_an_unchanged_version(
    tmp_path: Path, registry: Verdaccio
) -> None:
    previous = lockfile(registry, _versions("0.33.4", "0.33.4", "1.0.4"))
    previous["packages"][f"node_modules/{LINUX_VIPS}"]["integrity"] = "sha512-" + "A" * 86 + "=="
    (tmp_path / "package-lock.json").write_text(
        json.dumps(lockfile(registry, _versions("0.33.5", "0.33.5", "1.0.4")))
    )
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", {LINUX: ("0.33.4", "0.33.5"), LINUX_VIPS: ("1.0.4", "1.0.4")}),
        workspace=Workspace({"package-lock.json": json.dumps(previous)}),
    )

    with pytest.raises(VerificationFailed, match="integrity changed although 1.0.4 did not"):
        get_step("confirm-lockfile")(ctx)


# --- verify-tarballs --------------------------------------------------------------------------


def test_verify_tarballs_hashes_every_pinned_tarball(tmp_path: Path, registry: Verdaccio) -> None:
    result = run("verify-tarballs", tmp_path, registry)

    assert result.status == "passed"
    assert [
        (t["name"], t["matches_registry"], t["matches_lockfile"])
        for t in result.evidence["tarballs"]
    ] == [
        ("sharp", True, True),
        (LINUX, True, True),
        (LINUX_VIPS, True, True),
    ]
    assert all(t["size"] > 0 for t in result.evidence["tarballs"])


def test_verify_tarballs_fails_when_the_lockfile_disagrees(
    tmp_path: Path, registry: Verdaccio
) -> None:
    def other(ctx: StepContext) -> None:
        confirmed = ctx.outputs.lockfile
        assert confirmed is not None
        ctx.outputs.lockfile = replace(
            confirmed,
            entries=tuple(
                replace(entry, new_integrity="sha512-" + "B" * 86 + "==")
                if entry.name == LINUX_VIPS
                else entry
                for entry in confirmed.entries
            ),
        )

    with pytest.raises(
        VerificationFailed, match="tarball hash differs from a lockfile entry"
    ) as caught:
        run("verify-tarballs", tmp_path, registry, tamper=other)

    assert [t["matches_lockfile"] for t in caught.value.fields["tarballs"]] == [True, True, False]


def test_verify_tarballs_fails_on_a_tampered_tarball(
    tmp_path: Path, private_registry: Verdaccio
) -> None:
    tarball = private_registry.tarball_path(LINUX, "0.33.5")
    tarball.write_bytes(gzip.compress(b"not the published bytes"))

    with pytest.raises(VerificationFailed, match="hashes to sha512-") as caught:
        run("verify-tarballs", tmp_path, private_registry)

    assert f"{LINUX}@0.33.5" in caught.value.message
    assert "do not bypass" in caught.value.message
    assert [t["matches_registry"] for t in caught.value.fields["tarballs"]] == [True, False, True]
