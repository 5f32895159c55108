"""The base-images watcher: read the Dockerfiles at the base commit, ask the registries what
each tag points at now, and let the pure digest planner decide.

Each registry answers for itself: one that is unreachable (or refuses, or answers garbage)
turns its images into `Skipped` entries with the reason, and every other image proceeds.
The same helpers serve the `repin-base-images` step when another runbook (sharp) includes it.

When a new digest's image config gives no usable `created` date and a minimum age applies, the
bot dates the digest by when it first saw it: a `digest_sightings` table in the audit database
(`DigestSightings`), written the first time and read every time after.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Column, Engine, MetaData, String, Table, insert, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from bot.audit import AuditStore, create_table, stamp
from bot.config import BaseImageSettings
from bot.errors import BotError, InvalidRemoteData, ManifestError, ServiceUnavailable
from bot.manifests.dockerfile import DEFAULT_DOCKERFILES, BaseImage, Dockerfile, select_dockerfiles
from bot.models import Plan, Skipped
from bot.planning.base_images import (
    DigestPolicy,
    Resolution,
    needs_details,
    plan_digests,
    triage,
    unusable_created,
)
from bot.services import Services
from bot.sources.oci.client import OciClient
from bot.sources.oci.models import ImageDetails, ManifestHead, TagNotFound
from bot.watchers import WatchRequest, watcher

log = logging.getLogger(__name__)

BASE_IMAGE_RUNBOOK = "base-image"

_metadata = MetaData()
digest_sightings = Table(
    "digest_sightings",
    _metadata,
    Column("registry", String(255), primary_key=True),
    Column("repository", String(255), primary_key=True),
    Column("digest", String(71), primary_key=True),
    Column("first_seen", String(40), nullable=False),
)


class DigestSightings:
    """When the bot first saw each digest (for images whose config carries no usable date)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_table(digest_sightings, engine)

    @classmethod
    def open(cls, database_url: str) -> DigestSightings:
        """The sightings kept in the audit database at `database_url`."""
        return cls(AuditStore(database_url).engine)

    def first_seen(self, registry: str, repository: str, digest: str, now: datetime) -> datetime:
        """When `digest` was first seen; `now` (and recorded) if this is the first time."""
        key = (
            (digest_sightings.c.registry == registry)
            & (digest_sightings.c.repository == repository)
            & (digest_sightings.c.digest == digest)
        )
        try:
            with self.engine.begin() as connection:
                connection.execute(
                    insert(digest_sightings).values(
                        registry=registry,
                        repository=repository,
                        digest=digest,
                        first_seen=stamp(now),
                    )
                )
            return now
        except IntegrityError:
            with self.engine.begin() as connection:
                recorded = connection.execute(select(digest_sightings.c.first_seen).where(key))
                return datetime.fromisoformat(recorded.scalar_one())
        except SQLAlchemyError as error:
            raise ServiceUnavailable(
                f"database: cannot record when {digest} was first seen ({type(error).__name__}); "
                "check ROTATION_BOT_DATABASE_URL"
            ) from error


FirstSeen = Callable[[str, str, str], datetime]


@dataclass(frozen=True)
class Findings:
    """The base images found in a repository's Dockerfiles, the FROMs that name no image (an
    earlier stage, `scratch`), and what could not be read."""

    paths: tuple[str, ...]
    images: tuple[BaseImage, ...]
    not_images: tuple[Skipped, ...]
    skipped: tuple[Skipped, ...]


def dockerfile_patterns(settings: BaseImageSettings, defaults: tuple[str, ...]) -> tuple[str, ...]:
    """The repository's `dockerfiles` list, else the runbook's, else every Dockerfile."""
    return settings.dockerfiles or defaults or DEFAULT_DOCKERFILES


def digest_policy(
    runbook: str, settings: BaseImageSettings, default_age: timedelta
) -> DigestPolicy:
    """The policy for `runbook` with the repository's settings applied."""
    age = settings.minimum_release_age
    return DigestPolicy(
        runbook=runbook,
        minimum_age=default_age if age is None else age,
        pin_unpinned=settings.pin_unpinned,
        platforms=settings.image_platforms or (),
    )


def find_base_images(
    tracked: Iterable[str],
    patterns: tuple[str, ...],
    read: Callable[[str], str | None],
    *,
    configured: bool,
) -> Findings:
    """Parse every tracked file that matches `patterns`; unreadable ones become `Skipped`."""
    paths = tuple(select_dockerfiles(tracked, patterns))
    if configured and not paths:
        raise ManifestError(
            f"no tracked file matches dockerfiles {list(patterns)}; fix the list in "
            ".github/rotation-bot.yml"
        )
    images: list[BaseImage] = []
    not_images: list[Skipped] = []
    skipped: list[Skipped] = []
    for path in paths:
        try:
            text = read(path)
        except ManifestError as error:  # a symlink, over the size cap, or not UTF-8 text
            skipped.append(Skipped(path, error.message))
            continue
        if text is None:
            continue
        dockerfile = Dockerfile.parse(text, path)
        images.extend(dockerfile.images)
        not_images.extend(dockerfile.not_images)
        skipped.extend(dockerfile.skipped)
    return Findings(paths, tuple(images), tuple(not_images), tuple(skipped))


def resolve_images(
    oci: OciClient,
    images: Iterable[BaseImage],
    policy: DigestPolicy,
    *,
    now: datetime,
    first_seen: FirstSeen,
) -> dict[BaseImage, Resolution | Skipped]:
    """Ask each registry once per tag; a failing registry skips its images, not the others.

    `first_seen(registry, repository, digest)` dates a new digest whose config has no usable
    `created` (asked only when a minimum age applies)."""
    heads: dict[tuple[str, str, str], ManifestHead | BotError] = {}
    down: dict[str, ServiceUnavailable] = {}
    results: dict[BaseImage, Resolution | Skipped] = {}
    for image in images:
        reference = image.reference
        subject = f"{image.subject} {reference.name}:{reference.lookup_tag}"
        key = (reference.registry, reference.path, reference.lookup_tag)
        if key not in heads:
            if reference.registry in down:
                heads[key] = down[reference.registry]
            else:
                try:
                    heads[key] = oci.resolve(*key)
                except ServiceUnavailable as error:
                    down[reference.registry] = error
                    heads[key] = error
                except InvalidRemoteData as error:
                    heads[key] = error
        head = heads[key]
        if isinstance(head, BotError):
            results[image] = Skipped(subject, f"{_failure(head)}: {head.message}")
            continue
        results[image] = _with_details(
            oci, image, head.digest, policy, subject, now=now, first_seen=first_seen
        )
    return results


def _failure(error: BotError) -> str:
    if isinstance(error, TagNotFound):
        return "tag not found"
    if isinstance(error, ServiceUnavailable):
        return "registry unavailable"
    return "registry answered invalid data"


def _with_details(
    oci: OciClient,
    image: BaseImage,
    digest: str,
    policy: DigestPolicy,
    subject: str,
    *,
    now: datetime,
    first_seen: FirstSeen,
) -> Resolution | Skipped:
    """Dates and platforms for a digest that moved; `GET`s are spent only then."""
    if not needs_details(image, digest):
        return Resolution(digest)
    reference = image.reference
    platform = policy.platform_for(image)
    try:
        details: ImageDetails = oci.details(reference.registry, reference.path, digest, platform)
    except (ServiceUnavailable, InvalidRemoteData) as error:
        if policy.minimum_age or policy.platforms:
            return Skipped(subject, f"cannot inspect {digest}: {error.message}")
        log.warning("no created date", extra={"image": subject, "error": error.message})
        return Resolution(digest)
    previous_created = None
    if reference.digest is not None:
        try:
            previous_created = oci.details(
                reference.registry, reference.path, reference.digest, platform
            ).created
        except (ServiceUnavailable, InvalidRemoteData) as error:
            log.info(
                "no created date for the previous digest",
                extra={"image": subject, "error": error.message},
            )
    seen = None
    if policy.minimum_age > timedelta(0) and unusable_created(details.created, now) is not None:
        seen = first_seen(reference.registry, reference.path, digest)
    return Resolution(
        digest,
        created=details.created,
        previous_created=previous_created,
        platforms=details.platforms,
        first_seen=seen,
    )


def plan_base_images(
    *,
    repo: str,
    base_commit: str,
    findings: Findings,
    services: Services,
    policy: DigestPolicy,
    now: datetime,
) -> Plan:
    """Triage, resolve (registries are asked only when an image needs it) and plan."""
    chosen, left_alone = triage(findings.images, policy)
    sightings = functools.cache(
        lambda: DigestSightings.open(services.settings.resolved_database_url)
    )

    def first_seen(registry: str, repository: str, digest: str) -> datetime:
        return sightings().first_seen(registry, repository, digest, now)

    resolutions = (
        resolve_images(services.oci, chosen, policy, now=now, first_seen=first_seen)
        if chosen
        else {}
    )
    return plan_digests(
        repo=repo,
        base_commit=base_commit,
        images=chosen,
        resolutions=resolutions,
        skipped=(*findings.not_images, *findings.skipped, *left_alone),
        policy=policy,
        now=now,
    )


@watcher("base-images")
def watch_base_images(request: WatchRequest) -> Plan:
    """Plan the re-pinning of every base image in the repository's Dockerfiles."""
    workspace = request.workspace
    runbook = request.runbook
    settings = request.repo_config.settings_for(runbook.name, BaseImageSettings)
    policy = digest_policy(runbook.name, settings, runbook.minimum_release_age)
    patterns = dockerfile_patterns(settings, runbook.dockerfiles)
    findings = find_base_images(
        workspace.tracked_files(),
        patterns,
        workspace.read_text,
        configured=settings.dockerfiles is not None,
    )
    if not findings.paths:
        return Plan(
            repo=workspace.name,
            runbook=runbook.name,
            base_commit=workspace.base_commit,
            current_version=None,
            current_pins=(),
            rotations=(),
            skipped=(Skipped(runbook.name, f"no Dockerfile matches {', '.join(patterns)}"),),
        )
    return plan_base_images(
        repo=workspace.name,
        base_commit=workspace.base_commit,
        findings=findings,
        services=request.services,
        policy=policy,
        now=request.now,
    )
