"""Step `verify-tarballs`: download every pinned tarball (all platforms, not just the host's)
and hash it; the sha512 must equal both the lockfile's integrity and the registry's
`dist.integrity`.  `npm ci` silently skips a tampered optional package, so this is the check
that catches one.  Tarballs are streamed through the hash, size-capped, never unpacked."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bot.errors import VerificationFailed
from bot.manifests.lockfile import Lockfile
from bot.models import StepResult
from bot.sources.http import host_of
from bot.steps.registry import StepContext, passed, step


@step("verify-tarballs")
def verify_tarballs(ctx: StepContext) -> StepResult:
    """Hash each pinned tarball and compare with the lockfile and the registry."""
    rotation = ctx.rotation
    lockfile = Lockfile.parse((ctx.worktree / "package-lock.json").read_text(encoding="utf-8"))
    wanted = [(rotation.subject, rotation.new_version)] + [
        (pin.name, pin.new_version) for pin in rotation.pins
    ]
    manifests = [ctx.npm.packument(name).manifest(version) for name, version in wanted]
    with ThreadPoolExecutor(max_workers=4) as pool:
        hashes = list(
            pool.map(lambda manifest: ctx.npm.hash_tarball(manifest.dist.tarball), manifests)
        )
    evidence: list[dict[str, Any]] = []
    problems: list[str] = []
    for manifest, digest in zip(manifests, hashes, strict=True):
        entry = lockfile.top_level(manifest.name)
        locked = entry.integrity if entry else None
        label = f"{manifest.name}@{manifest.version}"
        if digest.integrity != manifest.dist.integrity:
            problems.append(
                f"{label}: the tarball from {host_of(digest.url)} hashes to {digest.integrity}, "
                f"but the registry says {manifest.dist.integrity}"
            )
        elif digest.integrity != locked:
            problems.append(f"{label}: the tarball hash differs from package-lock.json")
        evidence.append(
            {
                "name": manifest.name,
                "version": manifest.version,
                "url": digest.url,
                "size": digest.size,
                "sha512": digest.integrity,
                "matches_registry": digest.integrity == manifest.dist.integrity,
                "matches_lockfile": digest.integrity == locked,
            }
        )
    if problems:
        raise VerificationFailed(
            f"tarball verification failed: {problems[0]}; do not bypass — cross-check the "
            "package and keep the known-good pins",
            problems=problems,
            tarballs=evidence,
        )
    total = sum(item["size"] for item in evidence)
    return passed(
        f"{len(evidence)} tarballs ({total / 1e6:.1f} MB) hash to their lockfile and registry "
        "integrity",
        tarballs=evidence,
    )
