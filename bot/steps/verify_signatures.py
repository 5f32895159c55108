"""Step `verify-signatures`: every pinned version (all platforms, and the parent) must carry a
valid registry signature, under the repository's signature policy for its registry.

The policy used and the key source are recorded for every package on every run, so the audit
trail shows "not verifiable" when a registry publishes no keys under `if-published`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from bot.errors import VerificationFailed
from bot.models import PinChange, Rotation, StepResult
from bot.sources.http import host_of
from bot.steps.outputs import SignaturesVerified
from bot.steps.registry import StepContext, passed, skipped, step
from bot.verify.signatures import (
    RegistryKeyring,
    SignatureCheck,
    effective_policy,
    pinned_keys_for,
    verify_signatures,
)


def pinned_packages(rotation: Rotation) -> tuple[PinChange, ...]:
    """The parent at its target plus every pin, each once (shared by the verify steps); none
    for a digest rotation."""
    if rotation.kind == "digest":
        return ()
    packages = {
        rotation.subject: PinChange(
            rotation.subject, rotation.previous_version, rotation.new_version
        )
    }
    for pin in rotation.pins:
        packages.setdefault(pin.name, pin)
    return tuple(packages.values())


def _summary(checks: list[SignatureCheck]) -> str:
    counts = Counter(check.status for check in checks)
    policies = ", ".join(sorted({f"{c.policy} for {host_of(c.registry)}" for c in checks}))
    parts = [f"{status} for {count}" for status, count in sorted(counts.items())]
    return f"signatures: {'; '.join(parts)} of {len(checks)} packages (policy {policies})"


@step("verify-signatures")
def verify_signatures_step(ctx: StepContext) -> StepResult:
    """Check `dist.signatures` of every pinned version against the trusted registry keys."""
    packages = pinned_packages(ctx.rotation)
    if not packages:
        return skipped("no npm packages in this rotation")
    keyring = RegistryKeyring(
        ctx.services.http, ctx.npm_settings, pinned_keys_for(ctx.services.settings.state_dir)
    )
    checks: list[SignatureCheck] = []
    failures: list[dict[str, Any]] = []
    for package in packages:
        manifest = ctx.npm.packument(package.name).manifest(package.new_version)
        registry = ctx.npm_settings.registry_for(package.name)
        policy = effective_policy(ctx.repo_config.verify.signatures, registry)
        try:
            checks.append(verify_signatures(manifest, keyring.keys(registry), policy))
        except VerificationFailed as error:
            failures.append(error.as_evidence())
    evidence = [check.as_evidence() for check in checks]
    if failures:
        raise VerificationFailed(failures[0]["message"], failures=failures, signatures=evidence)
    ctx.outputs.signatures = SignaturesVerified(tuple(checks))
    outcome = passed if any(check.verified for check in checks) else skipped
    return outcome(_summary(checks), ctx.outputs.signatures)
