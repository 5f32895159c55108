"""Step `verify-provenance`: where a pinned version announces attestations, verify its SLSA
provenance (signer identity, subject, transparency log) and npm publish attestation offline;
block a version that lost the provenance its predecessor had.

Which CI identities may sign is per runbook: `SOURCE_REPOSITORIES` lists the GitHub
repositories whose tag builds publish each family.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bot.errors import ConfigError, VerificationFailed
from bot.models import StepResult
from bot.sources.npm.models import PackageVersion
from bot.steps.outputs import ProvenanceVerified
from bot.steps.registry import StepContext, passed, skipped, step
from bot.steps.verify_signatures import pinned_packages
from bot.verify.provenance import ProvenanceCheck, check_provenance, fetch_attestations
from bot.verify.signatures import RegistryKeyring, pinned_keys_for
from bot.verify.sigstore import IdentityPolicy, trusted_root_for

SOURCE_REPOSITORIES: Mapping[str, tuple[str, ...]] = {
    "sharp": ("lovell/sharp", "lovell/sharp-libvips"),
}


def _previous(ctx: StepContext, name: str, version: str | None) -> PackageVersion | None:
    packument = ctx.npm.packument(name)
    if version is None or version not in packument.versions:
        return None
    return packument.manifest(version)


@step("verify-provenance")
def verify_provenance_step(ctx: StepContext) -> StepResult:
    """Verify the attestations of every pinned version under `verify.provenance`."""
    packages = pinned_packages(ctx.rotation)
    if not packages:
        return skipped("no npm packages in this rotation")
    policy = ctx.repo_config.verify.provenance
    if policy == "off":
        return skipped("provenance: off (policy off)", policy=policy)
    repositories = SOURCE_REPOSITORIES.get(ctx.runbook.name)
    state_dir = ctx.services.settings.state_dir
    keyring = RegistryKeyring(ctx.services.http, ctx.npm_settings, pinned_keys_for(state_dir))
    root = trusted_root_for(state_dir)
    checks: list[ProvenanceCheck] = []
    failures: list[dict[str, Any]] = []
    for package in packages:
        manifest = ctx.npm.packument(package.name).manifest(package.new_version)
        url = manifest.dist.attestations_url
        if repositories is None and (url or policy == "required"):
            raise ConfigError(
                f"runbook {ctx.runbook.name!r} names no source repositories for provenance; "
                "add them to SOURCE_REPOSITORIES or set verify.provenance: off"
            )
        try:
            checks.append(
                check_provenance(
                    manifest,
                    fetch_attestations(url, ctx.services.http, ctx.npm_settings) if url else None,
                    previous=_previous(ctx, package.name, package.previous_version),
                    policy=policy,
                    root=root,
                    identity_policy=IdentityPolicy(repositories or ()),
                    keys=keyring.keys(ctx.npm_settings.registry_for(package.name)),
                )
            )
        except VerificationFailed as error:
            failures.append(error.as_evidence())
    evidence = [check.as_evidence() for check in checks]
    if failures:
        raise VerificationFailed(failures[0]["message"], failures=failures, provenance=evidence)
    verified = sum(check.status == "verified" for check in checks)
    summary = (
        f"provenance: verified for {verified} of {len(checks)} packages, "
        f"{len(checks) - verified} without (policy {policy})"
    )
    ctx.outputs.provenance = ProvenanceVerified(tuple(checks))
    outcome = passed if verified else skipped
    return outcome(summary, ctx.outputs.provenance)
