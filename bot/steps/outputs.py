"""Typed step outputs: what each step hands to later steps and to the proposal renderer.

A step stores its output on `StepContext.outputs` and returns it in its `StepResult`; the
audit evidence is `dataclasses.asdict` of it.  Later steps and the renderer read the typed
fields, so renaming one is a type error, not a silently empty PR column.
"""

from __future__ import annotations

from dataclasses import dataclass

from bot.models import DigestChange, KeptCopy, Skipped
from bot.verify.provenance import ProvenanceCheck
from bot.verify.risk import RiskSignal
from bot.verify.signatures import SignatureCheck


@dataclass(frozen=True)
class ReleaseNotesRead:
    """The target's release notes (or where they are, when they could not be read)."""

    url: str
    tag: str | None = None
    body: str | None = None
    breaking_lines: tuple[str, ...] = ()


@dataclass(frozen=True)
class AppliedEdit:
    """One manifest edit as written: file, JSON path, old and new value (or key)."""

    manifest: str
    location: str
    kind: str
    previous: str
    new: str


@dataclass(frozen=True)
class PinsBumped:
    """Every manifest edit of the rotation, per project."""

    edits: tuple[AppliedEdit, ...]
    files: tuple[str, ...]


@dataclass(frozen=True)
class LockfileRegenerated:
    """One project's lockfile, rewritten by its package manager."""

    project: str
    lockfile: str
    manager: str
    tool: str
    command: str
    ignored_config: tuple[str, ...] = ()
    # repository hooks and settings that would have run code, and were not honoured
    not_run: tuple[str, ...] = ()
    # the manager's own warnings (`ERESOLVE overriding peer dependency` …), line by line
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True)
class LockfilesRegenerated:
    """Every project's regenerated lockfile."""

    lockfiles: tuple[LockfileRegenerated, ...]


@dataclass(frozen=True)
class LockedEntry:
    """A confirmed lockfile entry: the parent or a platform binary, before and after."""

    project: str
    name: str
    key: str
    previous_version: str | None
    new_version: str
    previous_integrity: str | None
    new_integrity: str | None
    os: tuple[str, ...] = ()
    cpu: tuple[str, ...] = ()
    libc: tuple[str, ...] = ()
    # the registry's `dist.integrity` (npm sha512) for `new_version`: equal to `new_integrity`
    # when the lockfile records one; the only npm hash when it does not (Yarn Berry)
    registry_integrity: str | None = None
    # the package manager's own checksum from the lockfile (Yarn Berry's `10c0/…`): not an npm
    # integrity and never compared with the registry
    lock_checksum: str | None = None


@dataclass(frozen=True)
class LockfileConfirmed:
    """The regenerated lockfiles hold the rotation: entries, copies left alone, churn."""

    entries: tuple[LockedEntry, ...]
    kept: tuple[KeptCopy, ...] = ()
    changed_outside: int = 0
    # what a lockfile could not prove by itself, and where that evidence comes from instead
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClosureNode:
    """A package whose locked version the rotation changes, as verify-closure checked it
    (`previous_version` None: new in the tree; `install_scripts`: the allowed ones it has)."""

    name: str
    previous_version: str | None
    new_version: str
    published_at: str | None
    install_scripts: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class ClosureVerified:
    """Every changed node of the regenerated lockfiles, checked against `advisories` OSV `MAL-`
    advisories (None: no advisory source configured) and the minimum release age."""

    nodes: tuple[ClosureNode, ...]
    advisories: int | None
    minimum_age: str


@dataclass(frozen=True)
class TarballChecked:
    """One downloaded tarball's sha512, compared with the registry and the lockfile."""

    name: str
    version: str
    url: str
    size: int
    sha512: str
    matches_registry: bool
    # None: no lockfile records an npm integrity for this package (Yarn Berry)
    matches_lockfile: bool | None


@dataclass(frozen=True)
class TarballsVerified:
    """Every pinned tarball hashed."""

    tarballs: tuple[TarballChecked, ...]


@dataclass(frozen=True)
class SignaturesVerified:
    """Registry signature verdicts per package."""

    signatures: tuple[SignatureCheck, ...]


@dataclass(frozen=True)
class ProvenanceVerified:
    """Provenance verdicts per package."""

    provenance: tuple[ProvenanceCheck, ...]


@dataclass(frozen=True)
class RiskAssessed:
    """Risk signals from registry metadata."""

    signals: tuple[RiskSignal, ...]


@dataclass(frozen=True)
class BaseImagesRepinned:
    """Digest changes written, and the images left alone with why."""

    changes: tuple[DigestChange, ...]
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class CallSite:
    """One line that imports or requires the parent package."""

    file: str
    line: int
    text: str


@dataclass(frozen=True)
class CallSitesFound:
    """The call sites to audit for a major rotation."""

    call_sites: tuple[CallSite, ...]
    truncated: bool = False


@dataclass(frozen=True)
class DocumentRebaselined:
    """The pin-table document rows rewritten."""

    file: str
    packages: tuple[str, ...]


@dataclass
class Outputs:
    """What the steps of one rotation produced so far (None: the step did not run or had
    nothing to say)."""

    release_notes: ReleaseNotesRead | None = None
    pins: PinsBumped | None = None
    lockfiles: LockfilesRegenerated | None = None
    lockfile: LockfileConfirmed | None = None
    closure: ClosureVerified | None = None
    tarballs: TarballsVerified | None = None
    signatures: SignaturesVerified | None = None
    provenance: ProvenanceVerified | None = None
    risk: RiskAssessed | None = None
    base_images: BaseImagesRepinned | None = None
    call_sites: CallSitesFound | None = None
    document: DocumentRebaselined | None = None
