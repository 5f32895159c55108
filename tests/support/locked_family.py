"""Hand-made package-lock.json files of the fake sharp family, written from the registry's own
metadata, and a runner for the lockfile and tarball steps over them: the step tests break
exactly one thing in an otherwise correct lockfile."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bot.models import StepResult
from bot.sources.http import HttpSource
from bot.sources.npm.registry import NpmRegistry
from bot.sources.npm.settings import NpmSettings
from bot.steps.registry import StepContext, get_step
from tests.support.step_context import BaseFiles, make_context, rotation_for
from tests.support.verdaccio import Verdaccio

LINUX = "@img/sharp-linux-x64"
LINUX_VIPS = "@img/sharp-libvips-linux-x64"
MUSL = "@img/sharp-linuxmusl-x64"
PINS = {LINUX: ("0.33.4", "0.33.5"), LINUX_VIPS: ("1.0.2", "1.0.4")}


def registry_lockfile(registry: Verdaccio, versions: Mapping[str, str]) -> dict[str, Any]:
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


def family_versions(sharp: str, linux: str, vips: str) -> dict[str, str]:
    """sharp and the linux-x64 pair at these versions."""
    return {"sharp": sharp, LINUX: linux, LINUX_VIPS: vips}


def run_step(
    step: str,
    tmp_path: Path,
    registry: Verdaccio,
    *,
    change: Callable[[dict[str, Any]], None] = lambda lock: None,
    previous: Mapping[str, str] | None = None,
    pins: Mapping[str, tuple[str | None, str]] = PINS,
    tamper: Callable[[StepContext], None] | None = None,
) -> StepResult:
    """Run `step` on the 0.33.4 → 0.33.5 rotation, the rotated lockfile changed by `change`
    (for verify-tarballs: after confirm-lockfile, its output changed by `tamper`)."""
    new = registry_lockfile(registry, family_versions("0.33.5", "0.33.5", "1.0.4"))
    change(new)
    (tmp_path / "package-lock.json").write_text(json.dumps(new))
    old = registry_lockfile(registry, previous or family_versions("0.33.4", "0.33.4", "1.0.2"))
    ctx = make_context(
        tmp_path,
        registry.url,
        rotation_for("0.33.5", pins),
        workspace=BaseFiles({"package-lock.json": json.dumps(old)}),
    )
    if step == "verify-tarballs":
        get_step("confirm-lockfile")(ctx)
        if tamper is not None:
            tamper(ctx)
    return get_step(step)(ctx)
