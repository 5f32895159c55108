"""Step `assess-risk`: compare registry metadata of the previous and the new version of the
parent and of every pinned package (install scripts, dependencies, publisher, provenance,
unpacked size) and record the signals for the pull request body.  Signals inform the reviewer;
they never stop a rotation: a previous version with unusable metadata is simply not compared
(an unusable manifest of the new version stops it, as any step reading it would)."""

from __future__ import annotations

import semver

from bot.errors import InvalidRemoteData
from bot.models import StepResult
from bot.sources.npm.models import PackageVersion, Packument
from bot.steps.outputs import RiskAssessed
from bot.steps.registry import StepContext, passed, skipped, step
from bot.steps.verify_signatures import pinned_packages
from bot.verify.risk import RiskSignal, compare_versions


def _earlier_publishers(packument: Packument, version: str) -> set[str]:
    """Accounts that published any version older than `version`."""
    target = semver.Version.parse(version)
    publishers = set()
    for release in packument.releases():
        if semver.Version.parse(release.version) >= target:
            break
        try:
            publisher = packument.manifest(release.version).publisher
        except InvalidRemoteData:
            continue  # an unusable old manifest says nothing about who publishes this package
        if publisher:
            publishers.add(publisher)
    return publishers


def _manifest_or_none(packument: Packument, version: str | None) -> PackageVersion | None:
    """The previous version's manifest, or None when there is none to compare with (never
    published here, or unusable: that says nothing about the new version)."""
    if version is None or version not in packument.versions:
        return None
    try:
        return packument.manifest(version)
    except InvalidRemoteData:
        return None


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}{'' if number == 1 else 's'}"


@step("assess-risk")
def assess_risk(ctx: StepContext) -> StepResult:
    """Risk signals for the parent and each pinned package."""
    changes = pinned_packages(ctx.rotation)
    if not changes:
        return skipped("a digest rotation changes no npm package")
    signals: list[RiskSignal] = []
    for change in changes:
        packument = ctx.npm.packument(change.name)
        previous = _manifest_or_none(packument, change.previous_version)
        signals += compare_versions(
            previous,
            packument.manifest(change.new_version),
            earlier_publishers=_earlier_publishers(packument, change.new_version),
        )
    packages = _count(len(changes), "package")
    summary = (
        f"{_count(len(signals), 'risk signal')} for {packages}"
        if signals
        else f"no risk signals for {packages}"
    )
    ctx.outputs.risk = RiskAssessed(tuple(signals))
    return passed(summary, ctx.outputs.risk)
