"""Step `verify-closure`: every package whose locked version the rotation changes, not only
sharp and its pins (a new `@img/colour` too), must be free of known-malicious versions, add or
change no install script the runbook does not allow, and be older than the minimum release age.

- known-malicious: listed in an OSV `MAL-` advisory (`ROTATION_BOT_MALICIOUS_ADVISORIES`: a JSON
  file, a directory of them, or a URL), or recorded in the packument's `time` but missing from
  its `versions` (unpublished, as registries do after a compromise) → incident, do not bypass;
- install scripts: a `preinstall`/`install`/`postinstall` script added or changed, not allowed
  by the runbook's `allow-install-scripts` → incident, do not bypass;
- cooldown: a changed package younger than `minimum-release-age` (or with no publish time)
  holds the rotation: nothing is published, a later cycle retries.
"""

from __future__ import annotations

from dataclasses import asdict

from bot.errors import InvalidRemoteData, RotationHeld, VerificationFailed
from bot.models import StepResult, describe_duration
from bot.sources.npm.models import PackageVersion
from bot.steps.outputs import ClosureNode, ClosureVerified
from bot.steps.registry import StepContext, passed, skipped, step
from bot.verify.closure import (
    INSTALL_SCRIPTS,
    NodeChange,
    changed_nodes,
    load_malicious_advisories,
    script_problems,
)


def _previous_manifest(ctx: StepContext, name: str, version: str | None) -> PackageVersion | None:
    if version is None:
        return None
    try:
        return ctx.npm.packument(name).manifest(version)
    except InvalidRemoteData:
        return None  # the old version is gone: every script of the new one counts as added


def _changes(ctx: StepContext) -> tuple[NodeChange, ...]:
    """The changed nodes of every project's regenerated lockfile, each once."""
    found: dict[tuple[str, str], NodeChange] = {}
    for part in ctx.rotation.projects:
        before, after = ctx.locked_trees(part.project)
        for change in changed_nodes(before, after):
            found.setdefault((change.name, change.new_version), change)
    return tuple(sorted(found.values(), key=lambda change: (change.name, change.new_version)))


@step("verify-closure")
def verify_closure(ctx: StepContext) -> StepResult:
    """Check every changed node of the regenerated lockfiles."""
    if ctx.rotation.kind == "digest" or not ctx.rotation.projects:
        return skipped("no lockfile in this rotation", reason="no npm projects")
    source = ctx.services.settings.malicious_advisories
    advisories = load_malicious_advisories(source, ctx.services.http)
    allowed = [
        (item.package, item.versions, item.script) for item in ctx.runbook.allow_install_scripts
    ]
    configured = ctx.runbook_settings.minimum_release_age
    minimum_age = ctx.runbook.minimum_release_age if configured is None else configured
    now = ctx.services.clock()
    blocked: list[str] = []
    young: list[str] = []
    nodes: list[ClosureNode] = []
    for change in _changes(ctx):
        label = f"{change.name}@{change.new_version}"
        packument = ctx.npm.packument(change.name)
        advisory = advisories.find(change.name, change.new_version)
        if advisory is not None:
            blocked.append(f"{label} is known-malicious ({advisory.id})")
            continue
        if change.new_version in packument.unpublished():
            blocked.append(f"{label} was unpublished from the registry (a compromise is likely)")
            continue
        manifest = packument.manifest(change.new_version)
        blocked += script_problems(
            _previous_manifest(ctx, change.name, change.previous_version), manifest, allowed
        )
        published = manifest.published_at
        if published is None:
            young.append(f"{label} has no publish time")
        elif now - published < minimum_age:
            young.append(f"{label} was published {published:%Y-%m-%d %H:%M} UTC")
        nodes.append(
            ClosureNode(
                name=change.name,
                previous_version=change.previous_version,
                new_version=change.new_version,
                published_at=published.isoformat() if published else None,
                install_scripts=tuple(
                    (key, manifest.install_scripts[key])
                    for key in INSTALL_SCRIPTS
                    if key in manifest.install_scripts
                ),
            )
        )
    output = ClosureVerified(
        nodes=tuple(nodes),
        advisories=len(advisories.advisories) if source else None,
        minimum_age=describe_duration(minimum_age),
    )
    if blocked:
        raise VerificationFailed(
            f"the rotation's closure is unsafe: {blocked[0]}; do not bypass — keep the "
            "known-good pins",
            problems=blocked,
            **asdict(output),
        )
    if young and minimum_age.total_seconds() > 0:
        raise RotationHeld(
            f"rotation held: {young[0]}, younger than the minimum release age "
            f"{output.minimum_age}; a later cycle retries",
            problems=young,
            **asdict(output),
        )
    ctx.outputs.closure = output
    return passed(
        f"{len(nodes)} changed packages: none known-malicious or unpublished, no unexpected "
        f"install script, all older than {output.minimum_age}",
        output,
    )
