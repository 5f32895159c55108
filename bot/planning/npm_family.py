"""Pure planning for npm package families: current pins + releases + policy → Plan.

No I/O here.  The watcher hands in the parsed package.json, the lockfile, the parent's
packument (already fetched and validated) and the clock; the planner decides the patch target
(newest release on the current line) and the major target (newest release on the next line —
in 0.x, 0.33 → 0.34 is major), and derives each target's pin set from the parent's own
`optionalDependencies` at that version.  Prereleases and deprecated versions are never targets;
releases younger than the minimum age are skipped with their date.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import semver

from bot.errors import ManifestError, UsageError
from bot.manifests.lockfile import Lockfile
from bot.manifests.package_json import PackageJson
from bot.models import Pin, PinChange, Plan, Release, Rotation, Skipped, strict_version
from bot.sources.npm import Packument

Line = tuple[int, ...]


def line_of(version: str) -> Line:
    """The compatibility line: (0, minor) in 0.x, (major,) from 1.0 on."""
    parsed = semver.Version.parse(version)
    return (0, parsed.minor) if parsed.major == 0 else (parsed.major,)


@dataclass(frozen=True)
class FamilyPolicy:
    """What the runbook and repo config say about one package family."""

    runbook: str
    parent: str
    pin_names: tuple[str, ...]
    minimum_release_age: timedelta
    include_major: bool = True


def current_pins(
    package_json: PackageJson, lockfile: Lockfile, parent: Packument, policy: FamilyPolicy
) -> tuple[str, tuple[Pin, ...]]:
    """The locked parent version and the repository's pins, checked for consistency."""
    source = package_json.source
    if package_json.dependency_spec(policy.parent) is None:
        raise ManifestError(f"{source} does not depend on {policy.parent}")
    locked = lockfile.top_level(policy.parent)
    if locked is None or locked.version is None:
        raise ManifestError(
            f"{lockfile.source} has no node_modules/{policy.parent} entry; run npm install "
            "and commit the lockfile"
        )
    pins = package_json.pins(set(policy.pin_names))
    if not pins:
        raise ManifestError(
            f"{source} has no overrides for {', '.join(policy.pin_names)}; pin them under "
            '"overrides" (see runbooks/sharp.md)'
        )
    expected = parent.manifest(locked.version).optional_dependencies
    for pin in pins:
        wanted = expected.get(pin.name)
        if wanted is not None and wanted != pin.version:
            raise ManifestError(
                f"{source}: overrides pin {pin.name} {pin.version} but the locked "
                f"{policy.parent} {locked.version} needs {wanted}; fix the overrides (this "
                "combination installs and then fails to load)"
            )
    return locked.version, pins


def _eligible(
    releases: Iterable[Release], current: str, now: datetime, policy: FamilyPolicy
) -> tuple[list[Release], list[Skipped]]:
    ready: list[Release] = []
    skipped: list[Skipped] = []
    floor = semver.Version.parse(current)
    for release in releases:
        version = semver.Version.parse(release.version)
        if version <= floor or version.prerelease or version.build:
            continue
        subject = f"{policy.parent}@{release.version}"
        if release.deprecated:
            skipped.append(Skipped(subject, f"deprecated: {release.deprecated}"))
            continue
        if policy.minimum_release_age > timedelta(0):
            if release.published_at is None:
                skipped.append(Skipped(subject, "the registry gives no publish time"))
                continue
            age = now - release.published_at
            if age < policy.minimum_release_age:
                skipped.append(
                    Skipped(
                        subject,
                        f"published {release.published_at:%Y-%m-%d %H:%M} UTC, younger than "
                        f"the minimum release age {policy.minimum_release_age}; a later cycle "
                        "picks it up",
                    )
                )
                continue
        ready.append(release)
    return ready, skipped


def derive_pins(
    parent: Packument, version: str, previous: tuple[Pin, ...], policy: FamilyPolicy
) -> tuple[PinChange, ...] | Skipped:
    """The pin set `parent@version` itself declares for the configured platforms."""
    declared = parent.manifest(version).optional_dependencies
    missing = [name for name in policy.pin_names if name not in declared]
    if missing:
        return Skipped(
            f"{policy.parent}@{version}",
            f"does not publish {', '.join(missing)} for the configured platforms",
        )
    before = {pin.name: pin.version for pin in previous}
    return tuple(
        PinChange(
            name=name,
            previous_version=before.get(name),
            new_version=strict_version(declared[name], source=f"{parent.host} ({name})"),
        )
        for name in policy.pin_names
    )


def plan_family(
    *,
    repo: str,
    base_commit: str,
    package_json: PackageJson,
    lockfile: Lockfile,
    parent: Packument,
    policy: FamilyPolicy,
    now: datetime,
    target: str | None = None,
) -> Plan:
    """Decide the patch and major rotations (or the one explicit `target`)."""
    current, pins = current_pins(package_json, lockfile, parent, policy)
    releases, skipped = _eligible(parent.releases(), current, now, policy)
    current_line = line_of(current)
    chosen: list[tuple[str, Release]] = []
    if target is not None:
        match = next((release for release in releases if release.version == target), None)
        if match is None:
            reason = next((item.reason for item in skipped if item.subject.endswith(target)), None)
            raise UsageError(
                f"{policy.parent}@{target} is not a valid target "
                f"({reason or f'not a stable release newer than {current}'})"
            )
        chosen.append(("patch" if line_of(target) == current_line else "major", match))
    else:
        same_line = [release for release in releases if line_of(release.version) == current_line]
        if same_line:
            chosen.append(("patch", same_line[-1]))
        newer_lines = sorted({line_of(release.version) for release in releases} - {current_line})
        if newer_lines and policy.include_major:
            next_line = newer_lines[0]
            newest = [release for release in releases if line_of(release.version) == next_line]
            chosen.append(("major", newest[-1]))
    rotations: list[Rotation] = []
    for kind, release in chosen:
        derived = derive_pins(parent, release.version, pins, policy)
        if isinstance(derived, Skipped):
            skipped.append(derived)
            continue
        rotations.append(
            Rotation(
                runbook=policy.runbook,
                kind="major" if kind == "major" else "patch",
                subject=policy.parent,
                previous_version=current,
                new_version=release.version,
                branch=f"rotation-bot/{policy.runbook}-{release.version}",
                pins=derived,
                release=release,
            )
        )
    return Plan(
        repo=repo,
        runbook=policy.runbook,
        base_commit=base_commit,
        current_version=current,
        current_pins=pins,
        rotations=tuple(rotations),
        skipped=tuple(skipped),
    )
