"""Frozen dataclasses that cross module boundaries: pins, releases, plans, step results, runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import semver

from bot.errors import InvalidRemoteData

RotationKind = Literal["patch", "major", "digest"]
StepStatus = Literal["passed", "failed", "skipped"]
Outcome = Literal[
    "proposed",
    "up-to-date",
    "nothing-to-do",
    "unchanged",  # a scheduled check whose inputs are as at its last no-op check (bot/unchanged.py)
    "held",  # someone else pushed to the bot's branch: left alone
    "waiting",  # a major awaiting `/rotate approve`, or a rotation waiting for a slot
    "recorded",  # a command (ignore, unignore, approve) stored in the audit trail
    "explained",  # `/rotate explain`: the plan and what the bot would do, nothing changed
    "failed",
    "error",
    "interrupted",
]
# rotate: the normal cycle; rebase: regenerate open proposals on the current base whatever
# `rebase-when` says; recreate: close open proposals and open them afresh; explain: say why
Action = Literal["rotate", "rebase", "recreate", "explain"]

DIGEST_PATTERN = re.compile(r"^sha256:[0-9a-f]{64}$")
PACKAGE_NAME_PATTERN = re.compile(r"^(?:@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*$")
INTEGRITY_PATTERN = re.compile(r"^sha512-[A-Za-z0-9+/]{86}==$")


def utc_now() -> datetime:
    """The current time, UTC, to the millisecond."""
    moment = datetime.now(UTC)
    return moment.replace(microsecond=moment.microsecond // 1000 * 1000)


def describe_duration(value: timedelta) -> str:
    """A duration in words for messages: `3 days`, `1 day 12 hours`, `30 minutes`, `0 seconds`."""
    seconds = int(value.total_seconds())
    parts = []
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60), ("second", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count} {unit}{'' if count == 1 else 's'}")
    return " ".join(parts) or "0 seconds"


def strict_version(value: object, *, source: str) -> str:
    """Return `value` if it is a strict semver string, else raise naming `source`."""
    if isinstance(value, str) and semver.Version.is_valid(value):
        return value
    raise InvalidRemoteData(
        f"{source} gave version {value!r}, which is not strict semver; refusing to use it",
        source=source,
    )


def strict_digest(value: object, *, source: str) -> str:
    """Return `value` if it is `sha256:` and 64 lowercase hex digits, else raise naming `source`."""
    if isinstance(value, str) and DIGEST_PATTERN.match(value):
        return value
    raise InvalidRemoteData(
        f"{source} gave digest {value!r}, expected sha256:<64 hex>; refusing to use it",
        source=source,
    )


def strict_package_name(value: object, *, source: str) -> str:
    """Return `value` if it is a valid npm package name, else raise naming `source`."""
    if isinstance(value, str) and len(value) <= 214 and PACKAGE_NAME_PATTERN.match(value):
        return value
    raise InvalidRemoteData(f"{source} gave package name {value!r}, which is not valid")


def strict_integrity(value: object, *, source: str) -> str:
    """Return `value` if it is a single sha512 SRI string, else raise naming `source`."""
    if isinstance(value, str) and INTEGRITY_PATTERN.match(value):
        return value
    raise InvalidRemoteData(f"{source} gave integrity {value!r}, expected one sha512-… value")


@dataclass(frozen=True)
class Pin:
    """An exact version that a repository pins a package to."""

    name: str
    version: str


@dataclass(frozen=True)
class Release:
    """One published version of a package, as the registry describes it."""

    name: str
    version: str
    published_at: datetime | None = None
    deprecated: str | None = None


# The end of a `Skipped` reason that only time lifts (a release or digest younger than the
# minimum age): a plan with one is never remembered as a no-op (bot/unchanged.py).
LATER_CYCLE = "a later cycle picks it up"


@dataclass(frozen=True)
class Skipped:
    """An expected non-result: something that was not done, and why."""

    subject: str
    reason: str


@dataclass(frozen=True)
class PinChange:
    """A package pin moving from one exact version to another."""

    name: str
    previous_version: str | None
    new_version: str


@dataclass(frozen=True)
class DigestChange:
    """A base image reference moving from one digest to another."""

    file: str
    line: int
    image: str
    tag: str
    previous_digest: str | None
    new_digest: str
    previous_created: str | None = None
    new_created: str | None = None


@dataclass(frozen=True)
class Project:
    """One Node.js project: a directory with a package.json and a lockfile, and the workspace
    members that share that lockfile."""

    directory: str
    manager: str
    lockfile: str
    members: tuple[str, ...] = ()
    package_manager: str | None = None
    other_lockfiles: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """How plans and proposals name the project: its directory, `.` for the root."""
        return self.directory or "."

    def path(self, name: str) -> str:
        """The repository-relative path of `name` in the project's directory."""
        return f"{self.directory}/{name}" if self.directory else name


EditKind = Literal["value", "key", "insert"]


@dataclass(frozen=True)
class ManifestEdit:
    """One change to a package.json: a value replaced, a key renamed, or a member inserted.

    `location` is the JSON path of the value (for `key`, of the member being renamed; for
    `insert`, of the new member).  `previous` is the old value or key ("" for an insert)."""

    manifest: str
    location: tuple[str, ...]
    kind: EditKind
    previous: str
    new: str


@dataclass(frozen=True)
class KeptCopy:
    """A copy of the parent package the repository does not control: who holds it, at what."""

    key: str
    version: str
    holder: str
    spec: str


@dataclass(frozen=True)
class ProjectStatus:
    """What one project has of a package family today."""

    project: Project
    current_version: str
    pins: tuple[Pin, ...]
    pinned: bool
    kept: tuple[KeptCopy, ...] = ()
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ProjectRotation:
    """One project's part of a rotation: its version move, pins and the edits that make it."""

    project: Project
    previous_version: str
    new_version: str
    pins: tuple[PinChange, ...]
    pinned: bool
    edits: tuple[ManifestEdit, ...]
    kept: tuple[KeptCopy, ...] = ()
    # how the project holds the parent and its pins, one sentence each (plan and proposal)
    notes: tuple[str, ...] = ()
    # configured binaries no manifest of the project pins (verified in the lockfile only)
    unpinned: tuple[str, ...] = ()
    # the inserts `runbooks.<name>.pin: true` would make to pin them (shown in the proposal)
    suggested: tuple[ManifestEdit, ...] = ()
    # False: the project pins the binaries but does not install the parent itself
    installs_parent: bool = True


@dataclass(frozen=True)
class Rotation:
    """One proposal's worth of change: a package moving to a target, or digests moving."""

    runbook: str
    kind: RotationKind
    subject: str
    previous_version: str | None
    new_version: str
    branch: str
    pins: tuple[PinChange, ...] = ()
    digests: tuple[DigestChange, ...] = ()
    release: Release | None = None
    projects: tuple[ProjectRotation, ...] = ()

    @property
    def is_major(self) -> bool:
        """Whether the rotation crosses a breaking-change line (0.33 → 0.34, 1.x → 2.x)."""
        return self.kind == "major"


@dataclass(frozen=True)
class Plan:
    """What would rotate in one repository for one runbook; computed without side effects."""

    repo: str
    runbook: str
    base_commit: str
    current_version: str | None
    current_pins: tuple[Pin, ...]
    rotations: tuple[Rotation, ...]
    skipped: tuple[Skipped, ...] = ()
    projects: tuple[ProjectStatus, ...] = ()


@dataclass(frozen=True)
class StepResult:
    """What a runbook step did, with the evidence that proves it."""

    kind: str
    status: StepStatus
    summary: str
    evidence: Mapping[str, Any] = field(default_factory=dict)
    started_at: datetime | None = None
    finished_at: datetime | None = None


@dataclass(frozen=True)
class Proposal:
    """A pull request as the bot would open it: branch, title and markdown body."""

    branch: str
    title: str
    body: str
    base_branch: str
    base_commit: str
    head_commit: str
    runbook: str
    new_version: str
    run_id: str = ""
    draft: bool = False
    labels: tuple[str, ...] = ()
    reviewers: tuple[str, ...] = ()
    assignees: tuple[str, ...] = ()


@dataclass(frozen=True)
class PublishedProposal:
    """Where a proposal went: its forge URL or local id, and whether it was new."""

    url: str
    created: bool
    updated: bool
    superseded: tuple[str, ...] = ()


@dataclass(frozen=True)
class RunSummary:
    """The outcome of one rotation attempt, as the CLI and the service report it."""

    run_id: str
    repo: str
    runbook: str
    target: str | None
    outcome: Outcome
    message: str
    exit_code: int
    steps: tuple[StepResult, ...] = ()
    proposal: Proposal | None = None
    published: PublishedProposal | None = None


@dataclass(frozen=True)
class Trigger:
    """What started a run: the schedule, a chat command, or the command line."""

    kind: Literal["cli", "schedule", "chat"]
    actor: str
    url: str | None = None


@dataclass(frozen=True)
class RunRequest:
    """One request to rotate a repository: which runbooks (None: all that apply), which target."""

    repo: str
    trigger: Trigger
    runbooks: tuple[str, ...] | None = None
    target: str | None = None
    forge: str | None = None
    action: Action = "rotate"
