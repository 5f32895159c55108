"""Step `verify-tarballs`: download every pinned tarball (all platforms, not just the host's)
and hash it; the sha512 must equal both the registry's `dist.integrity` and every lockfile entry
confirm-lockfile found for it (a Yarn Berry lockfile records no npm integrity: there the tarball
is matched with the registry only, and the evidence says so).  `npm ci` silently skips a
tampered optional package, so this is the check that catches one.  Tarballs are streamed through
the hash, size-capped, never unpacked."""

from __future__ import annotations

import contextvars
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict

from bot.errors import StepFailed, VerificationFailed
from bot.models import StepResult
from bot.sources.http import host_of
from bot.steps.outputs import TarballChecked, TarballsVerified
from bot.steps.registry import StepContext, passed, step
from bot.steps.verify_signatures import pinned_packages


@step("verify-tarballs")
def verify_tarballs(ctx: StepContext) -> StepResult:
    """Hash each pinned tarball and compare with the lockfiles and the registry."""
    confirmed = ctx.outputs.lockfile
    if confirmed is None:
        raise StepFailed("verify-tarballs needs confirm-lockfile earlier in the runbook")
    manifests = [
        ctx.npm.packument(package.name).manifest(package.new_version)
        for package in pinned_packages(ctx.rotation)
    ]
    with ThreadPoolExecutor(max_workers=4) as pool:
        # each download runs in a copy of this context, so it sees the run's deadline
        futures = [
            pool.submit(contextvars.copy_context().run, ctx.npm.hash_tarball, manifest.dist.tarball)
            for manifest in manifests
        ]
        hashes = [future.result() for future in futures]
    checked: list[TarballChecked] = []
    problems: list[str] = []
    for manifest, digest in zip(manifests, hashes, strict=True):
        label = f"{manifest.name}@{manifest.version}"
        locked = {
            entry.new_integrity
            for entry in confirmed.entries
            if entry.name == manifest.name
            and entry.new_version == manifest.version
            and entry.new_integrity is not None
        }
        if digest.integrity != manifest.dist.integrity:
            problems.append(
                f"{label}: the tarball from {host_of(digest.url)} hashes to {digest.integrity}, "
                f"but the registry says {manifest.dist.integrity}"
            )
        elif locked - {digest.integrity}:
            problems.append(f"{label}: the tarball hash differs from a lockfile entry")
        checked.append(
            TarballChecked(
                name=manifest.name,
                version=manifest.version,
                url=digest.url,
                size=digest.size,
                sha512=digest.integrity,
                matches_registry=digest.integrity == manifest.dist.integrity,
                matches_lockfile=locked == {digest.integrity} if locked else None,
            )
        )
    output = TarballsVerified(tuple(checked))
    if problems:
        raise VerificationFailed(
            f"tarball verification failed: {problems[0]}; do not bypass — cross-check the "
            "package and keep the known-good pins",
            problems=problems,
            tarballs=[asdict(item) for item in checked],
        )
    ctx.outputs.tarballs = output
    total = sum(item.size for item in checked)
    return passed(
        f"{len(checked)} tarballs ({total / 1e6:.1f} MB) hash to their lockfile and registry "
        "integrity",
        output,
    )
