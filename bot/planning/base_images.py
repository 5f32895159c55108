"""Pure planning for base-image digests: found references + resolved digests + policy → Plan.

No I/O here.  `triage` decides which `FROM` references are worth a registry lookup (pinned
references with a tag, and unpinned ones when the repository asks to pin them); the watcher
resolves those; `plan_digests` turns the answers into one rotation of kind "digest" on the
fixed branch `rotation-bot/<runbook>`, so a tag that moves again updates the same proposal.
Digests younger than the minimum age, or missing a required platform, are skipped with the
reason; so is every image whose registry could not answer.  A digest whose image config has no
usable `created` date (none, the Unix epoch or earlier as reproducible builds write, or a date
in the future) is aged from when the bot first saw it instead.

Every `FROM` line shows in the plan exactly once: a pinned image as a current pin (`file:line
image:tag`), everything else as a skipped entry saying why (unpinned, an earlier stage or
`scratch`, a value the bot cannot resolve), plus a digest change when its tag moved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bot.manifests.dockerfile import BaseImage
from bot.models import (
    LATER_CYCLE,
    DigestChange,
    Pin,
    Plan,
    Rotation,
    Skipped,
    describe_duration,
    strict_digest,
)
from bot.sources.oci.models import platform_matches

DEFAULT_PLATFORM = "linux/amd64"
UNIX_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class DigestPolicy:
    """What the runbook and the repository config say about base images."""

    runbook: str
    minimum_age: timedelta = timedelta(0)
    pin_unpinned: bool = False
    platforms: tuple[str, ...] = ()

    @property
    def branch(self) -> str:
        """The one branch every digest rotation of this runbook uses."""
        return f"rotation-bot/{self.runbook}"

    def platform_for(self, image: BaseImage) -> str:
        """The platform whose `created` date counts: the FROM's, the first configured, amd64."""
        return image.platform or (self.platforms[0] if self.platforms else DEFAULT_PLATFORM)


@dataclass(frozen=True)
class Resolution:
    """What the registry says about one image's tag now (dates and platforms when looked up)."""

    digest: str
    created: datetime | None = None
    previous_created: datetime | None = None
    platforms: tuple[str, ...] | None = None
    first_seen: datetime | None = None


def unusable_created(created: datetime | None, now: datetime) -> str | None:
    """Why an image config's `created` cannot date a digest, or None when it can."""
    if created is None:
        return "no created date"
    if created <= UNIX_EPOCH:
        return f"created {created:%Y-%m-%d}, the fixed date of a reproducible build"
    if created > now:
        return f"created {created:%Y-%m-%d %H:%M} UTC, in the future"
    return None


def needs_details(image: BaseImage, digest: str) -> bool:
    """Whether the tag moved, so its dates (and platforms) are worth `GET`s."""
    return image.reference.digest != digest


def triage(
    images: Iterable[BaseImage], policy: DigestPolicy
) -> tuple[tuple[BaseImage, ...], tuple[Skipped, ...]]:
    """The images to look up, and the ones left alone (with why)."""
    chosen: list[BaseImage] = []
    skipped: list[Skipped] = []
    for image in images:
        reference = image.reference
        if reference.digest is None and not policy.pin_unpinned:
            skipped.append(
                Skipped(
                    f"{image.subject} {reference}",
                    "not pinned to a digest; set pin-unpinned: true to pin it",
                )
            )
        elif reference.digest is not None and reference.tag is None:
            skipped.append(
                Skipped(f"{image.subject} {reference}", "pinned by digest alone; no tag to follow")
            )
        else:
            chosen.append(image)
    return tuple(chosen), tuple(skipped)


def _timestamp(value: datetime | None) -> str | None:
    return value.strftime("%Y-%m-%dT%H:%M:%SZ") if value is not None else None


def _check(
    image: BaseImage, resolution: Resolution, policy: DigestPolicy, now: datetime
) -> Skipped | None:
    subject = f"{image.subject} {image.reference.name}:{image.reference.lookup_tag}"
    if policy.platforms and resolution.platforms is not None:
        missing = [
            wanted
            for wanted in policy.platforms
            if not any(platform_matches(wanted, offered) for offered in resolution.platforms)
        ]
        if missing:
            return Skipped(
                subject,
                f"{resolution.digest} lacks platform {', '.join(missing)}; keeping the old digest",
            )
    if policy.minimum_age > timedelta(0):
        unusable = unusable_created(resolution.created, now)
        if unusable is None and resolution.created is not None:
            if now - resolution.created < policy.minimum_age:
                return Skipped(
                    subject,
                    f"{resolution.digest} was built {resolution.created:%Y-%m-%d %H:%M} UTC, "
                    f"younger than the minimum age {describe_duration(policy.minimum_age)}; "
                    f"{LATER_CYCLE}",
                )
        elif resolution.first_seen is None:
            return Skipped(
                subject,
                f"{resolution.digest} has {unusable} for {policy.platform_for(image)}; "
                "cannot check the minimum age",
            )
        elif now - resolution.first_seen < policy.minimum_age:
            return Skipped(
                subject,
                f"{resolution.digest} has {unusable} for {policy.platform_for(image)}; first "
                f"seen {resolution.first_seen:%Y-%m-%d %H:%M} UTC, younger than the minimum age "
                f"{describe_duration(policy.minimum_age)}; {LATER_CYCLE}",
            )
    return None


def fingerprint(changes: Iterable[DigestChange]) -> str:
    """A short, stable name for a set of digest changes (the rotation's `new_version`)."""
    lines = sorted(f"{change.file}:{change.line}:{change.new_digest}" for change in changes)
    return "digests-" + hashlib.sha256("\n".join(lines).encode()).hexdigest()[:12]


def plan_digests(
    *,
    repo: str,
    base_commit: str,
    images: Sequence[BaseImage],
    resolutions: Mapping[BaseImage, Resolution | Skipped],
    skipped: Sequence[Skipped],
    policy: DigestPolicy,
    now: datetime,
) -> Plan:
    """One digest rotation for every image whose tag moved (and passes the policy)."""
    changes: dict[tuple[str, int, int], DigestChange] = {}
    left: list[Skipped] = list(skipped)
    pins: list[Pin] = []
    for image in images:
        reference = image.reference
        if reference.digest is not None:
            name = f"{image.subject} {reference.name}:{reference.lookup_tag}"
            pins.append(Pin(name, reference.digest))
        resolution = resolutions.get(image)
        if resolution is None:
            continue
        if isinstance(resolution, Skipped):
            left.append(resolution)
            continue
        new_digest = strict_digest(resolution.digest, source=f"registry for {reference.name}")
        if new_digest == reference.digest:
            continue
        problem = _check(image, resolution, policy, now)
        if problem is not None:
            left.append(problem)
            continue
        key = (image.file, image.span.start, image.span.end)
        changes.setdefault(
            key,
            DigestChange(
                file=image.file,
                line=image.span.line,
                image=reference.name,
                tag=reference.lookup_tag,
                previous_digest=reference.digest,
                new_digest=new_digest,
                previous_created=_timestamp(resolution.previous_created),
                new_created=_timestamp(resolution.created),
            ),
        )
    ordered = tuple(sorted(changes.values(), key=lambda change: (change.file, change.line)))
    rotations: tuple[Rotation, ...] = ()
    if ordered:
        rotations = (
            Rotation(
                runbook=policy.runbook,
                kind="digest",
                subject="base images",
                previous_version=None,
                new_version=fingerprint(ordered),
                branch=policy.branch,
                digests=ordered,
            ),
        )
    return Plan(
        repo=repo,
        runbook=policy.runbook,
        base_commit=base_commit,
        current_version=None,
        current_pins=tuple(pins),
        rotations=rotations,
        skipped=tuple(left),
    )
