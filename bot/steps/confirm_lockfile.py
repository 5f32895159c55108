"""Step `confirm-lockfile`: re-read every regenerated lockfile and prove the rotation happened.

For each project: every copy of the parent the repository controls is at the target, and each of
them resolves every configured platform's binary (npm is known to drop other platforms' optional
packages) at the pin the target declares, with its os/cpu/libc fields (a field the lockfile
never recorded before is not required: older npm versions do not write `libc`; Yarn 1 records no
os/cpu/libc at all, and the evidence says so); each such entry's sha512 changed when its version
changed (and did not when it did not) and equals the registry's `dist.integrity` (where the
lockfile records one: Yarn Berry's `checksum` is Yarn's own, so there the registry's integrity is
the evidence, matched by verify-tarballs).  Copies another package holds at its own range are
checked against their own version's `optionalDependencies`, so no copy loads binaries built for
another version, and a copy the package manager added or kept is named with who asked for it.  A
project that pins the binaries without installing the parent has each pinned binary (and the
libvips it brings) checked against what the parent's target declares.  Nothing outside the
family's dependency closure may change.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import asdict

from bot.errors import VerificationFailed
from bot.manifests.locked import LockedPackage, LockedTree
from bot.models import ProjectRotation, StepResult
from bot.sources.npm.models import PackageVersion
from bot.steps.outputs import LockedEntry, LockfileConfirmed
from bot.steps.registry import StepContext, passed, step

SHOWN = 5
# the peer context in a lockfile key: pnpm's `(peer@version)…` suffix, Yarn Berry's virtual hash
_PEER_CONTEXT = re.compile(r"\(.*\)$|(?<=virtual:)[0-9a-f]+(?=#)")


def _previous_of(before: LockedTree, entry: LockedPackage) -> LockedPackage | None:
    same_key = before.package(entry.key)
    if same_key is not None and same_key.name == entry.name:
        return same_key
    copies = before.find(entry.name)
    return copies[0] if len(copies) == 1 else None


def _check(
    project: str,
    entry: LockedPackage,
    manifest: PackageVersion,
    trees: tuple[LockedTree, LockedTree],
    problems: list[str],
) -> LockedEntry:
    before, after = trees
    where = f"{project}: {entry.key}"
    previous = _previous_of(before, entry)
    if entry.version != manifest.version:
        problems.append(f"{where} is {entry.version}, expected {manifest.version}")
    for field_name, expected, actual, earlier in (
        ("os", manifest.os, entry.os, previous.os if previous else None),
        ("cpu", manifest.cpu, entry.cpu, previous.cpu if previous else None),
        ("libc", manifest.libc, entry.libc, previous.libc if previous else None),
    ):
        if not after.records_platforms or not expected or tuple(actual) == tuple(expected):
            continue
        if not actual and earlier == ():
            continue  # this lockfile never recorded the field: its npm does not write it
        problems.append(f"{where} has {field_name} {list(actual)}, expected {list(expected)}")
    if entry.integrity is not None:
        if not entry.integrity.startswith("sha512-"):
            problems.append(f"{where} has no sha512 integrity")
        elif entry.integrity != manifest.dist.integrity:
            problems.append(f"{where} integrity differs from the registry's dist.integrity")
        elif previous is not None and previous.version != manifest.version:
            if entry.integrity == previous.integrity:
                problems.append(f"{where} integrity did not change although the version did")
        elif previous is not None and entry.integrity != previous.integrity:
            problems.append(f"{where} integrity changed although {manifest.version} did not")
    return LockedEntry(
        project=project,
        name=entry.name,
        key=entry.key,
        previous_version=previous.version if previous else None,
        new_version=entry.version,
        previous_integrity=previous.integrity if previous else None,
        new_integrity=entry.integrity,
        os=entry.os,
        cpu=entry.cpu,
        libc=entry.libc,
        registry_integrity=manifest.dist.integrity,
        lock_checksum=entry.checksum,
    )


def _binaries_of(
    ctx: StepContext, lock: LockedTree, holder: LockedPackage, pin_names: set[str]
) -> dict[str, LockedPackage | None]:
    """pin name → the entry `holder` resolves it to (None: the lockfile lacks it)."""
    declared = ctx.npm.packument(holder.name).manifest(holder.version).optional_dependencies
    resolved: dict[str, LockedPackage | None] = {}
    for name in sorted(pin_names & set(declared)):
        edge = next(
            (edge for edge in lock.edges if edge.holder == holder.key and edge.name == name),
            None,
        )
        resolved[name] = lock.package(edge.target) if edge and edge.target else None
    return resolved


def _closure_names(tree: LockedTree, names: set[str]) -> set[str]:
    """Names of every copy of `names` and everything they depend on, transitively."""
    keys = tree.closure([package.key for package in tree.packages if package.name in names])
    return {package.name for key in keys if (package := tree.package(key)) is not None}


def _outside(
    tree: LockedTree, allowed: set[str]
) -> Counter[tuple[str, tuple[str, str | None, str | None]]]:
    """The entries of packages outside `allowed`, as (key without its peer context, version,
    integrity, checksum): pnpm names the peers a package sees in its key
    (`imgkit@1.0.0(sharp@0.34.1)`) and Yarn Berry hashes them into `virtual:<hash>`, so a
    rotation renames such an entry without changing the package."""
    return Counter(
        (_PEER_CONTEXT.sub("", key), value)
        for key, value in tree.signature().items()
        if (package := tree.package(key)) is not None and package.name not in allowed
    )


def _confirm_copies(
    ctx: StepContext,
    part: ProjectRotation,
    before: LockedTree,
    after: LockedTree,
    problems: list[str],
) -> list[LockedEntry]:
    """Every copy the rotation controls is at the target with the target's binaries; every
    other copy resolves the binaries its own version declares."""
    project, subject = part.project, ctx.rotation.subject
    label = project.label
    kept = {(copy.key, copy.version) for copy in part.kept}
    pins = {pin.name: pin.new_version for pin in part.pins}
    entries: list[LockedEntry] = []
    targets = [copy for copy in after.find(subject) if copy.version == part.new_version]
    if not targets:
        problems.append(f"{label}: {project.lockfile} has no {subject} {part.new_version} entry")
    for copy in after.find(subject):
        if copy.version == part.new_version or (copy.key, copy.version) in kept:
            continue
        previous = before.package(copy.key)
        if previous is not None and previous.version == copy.version:
            keepers = sorted({_holder(after, edge.holder) for edge in after.dependents(copy.key)})
            problems.append(
                f"{label}: {copy.key} is still {copy.version}; the rotation controls it"
                + (
                    f" ({project.manager} kept it for {', '.join(keepers)}: force every copy "
                    f"with an override of {subject}, or align those packages)"
                    if keepers
                    else ""
                )
            )
        else:
            holders = ", ".join(
                f"{edge.spec} from {_holder(after, edge.holder)}"
                for edge in after.dependents(copy.key)
            )
            problems.append(
                f"{label}: {project.manager} added {copy.key} {copy.version} "
                f"({holders or 'nothing depends on it'}); the rotation would leave two copies"
            )
    parent = ctx.npm.packument(subject).manifest(part.new_version)
    for copy in targets:
        entries.append(_check(label, copy, parent, (before, after), problems))
        for name, entry in _binaries_of(ctx, after, copy, set(pins)).items():
            if entry is None:
                problems.append(
                    f"{label}: {name} is missing from {project.lockfile} for {copy.key} "
                    f"({project.manager} dropped this platform's optional package)"
                )
                continue
            manifest = ctx.npm.packument(name).manifest(pins[name])
            entries.append(_check(label, entry, manifest, (before, after), problems))
    for copy in after.find(subject):
        if copy.version == part.new_version:
            continue
        declared = ctx.npm.packument(copy.name).manifest(copy.version).optional_dependencies
        for name, entry in _binaries_of(ctx, after, copy, set(pins)).items():
            if entry is not None and entry.version != declared[name]:
                problems.append(
                    f"{label}: {copy.key} ({copy.version}) would load {name} "
                    f"{entry.version} ({entry.key}), built for another {subject}; it needs "
                    f"{declared[name]}"
                )
    return entries


def _confirm_pins_only(
    ctx: StepContext,
    part: ProjectRotation,
    before: LockedTree,
    after: LockedTree,
    problems: list[str],
) -> list[LockedEntry]:
    """A project that pins the binaries without installing the parent: each pinned binary,
    and what it brings of the family, is locked at what the parent's target declares."""
    project = part.project
    label = project.label
    pins = {pin.name: pin.new_version for pin in part.pins}
    found = after.reachable(after.importers, pins.__contains__)
    required = {name for name in pins if name not in part.unpinned}
    for name in sorted(required):
        declared = ctx.npm.packument(name).manifest(pins[name]).optional_dependencies
        required |= {dependency for dependency in declared if dependency in pins}
    entries: list[LockedEntry] = []
    for name in sorted(pins):
        entry = found.get(name)
        if entry is None:
            if name in required:
                problems.append(
                    f"{label}: {name} is missing from {project.lockfile} "
                    f"({project.manager} dropped this platform's optional package)"
                )
            continue
        manifest = ctx.npm.packument(name).manifest(pins[name])
        entries.append(_check(label, entry, manifest, (before, after), problems))
    return entries


def _holder(tree: LockedTree, key: str) -> str:
    package = tree.package(key)
    return f"{package.name}@{package.version}" if package else f"the project ({key})"


def _confirm_project(
    ctx: StepContext, part: ProjectRotation, problems: list[str]
) -> tuple[list[LockedEntry], int, LockedTree]:
    project = part.project
    rotation = ctx.rotation
    before, after = ctx.locked_trees(project)
    label = project.label
    if part.installs_parent:
        entries = _confirm_copies(ctx, part, before, after, problems)
    else:
        entries = _confirm_pins_only(ctx, part, before, after, problems)
    family = {rotation.subject, *(pin.name for pin in part.pins)}
    allowed = _closure_names(after, family) | _closure_names(before, family)
    old, new = _outside(before, allowed), _outside(after, allowed)
    churn = sorted(((old - new) + (new - old)).elements())
    if churn:
        problems.append(
            f"{label}: {len(churn)} lockfile entr{'y' if len(churn) == 1 else 'ies'} outside "
            f"{rotation.subject}'s dependency closure changed "
            f"({', '.join(key for key, _ in churn[:SHOWN])}); "
            "refusing a rotation that moves unrelated packages"
        )
    return entries, len(churn), after


def _notes(part: ProjectRotation, tree: LockedTree, entries: list[LockedEntry]) -> list[str]:
    """What this lockfile cannot prove by itself, said in the evidence and the proposal."""
    lockfile = part.project.lockfile
    notes = []
    if not tree.records_platforms:
        notes.append(
            f"{lockfile} records no os/cpu/libc: each platform's binary is identified by its "
            "package name and checked against the registry's manifest of that version"
        )
    unrecorded = [entry.name for entry in entries if entry.new_integrity is None]
    if unrecorded:
        checksums = any(entry.lock_checksum for entry in entries)
        notes.append(
            f"{lockfile} records no npm integrity for {len(unrecorded)} of these entries"
            + (
                " (its `checksum` is the package manager's own archive checksum)"
                if checksums
                else ""
            )
            + ": their sha512 is the registry's `dist.integrity`, which verify-tarballs matches "
            "against the downloaded tarballs"
        )
    return notes


@step("confirm-lockfile")
def confirm_lockfile(ctx: StepContext) -> StepResult:
    """Check every regenerated lockfile against the pins and the registry."""
    problems: list[str] = []
    entries: list[LockedEntry] = []
    notes: list[str] = []
    churn = 0
    for part in ctx.rotation.projects:
        found, changed, tree = _confirm_project(ctx, part, problems)
        entries.extend(found)
        notes.extend(_notes(part, tree, found))
        churn += changed
    output = LockfileConfirmed(
        entries=tuple(entries),
        kept=tuple(copy for part in ctx.rotation.projects for copy in part.kept),
        changed_outside=churn,
        notes=tuple(notes),
    )
    if problems:
        raise VerificationFailed(
            f"lockfile confirmation failed {len(problems)} check(s): {problems[0]}",
            problems=problems,
            entries=[asdict(entry) for entry in entries],
        )
    ctx.outputs.lockfile = output
    projects = len(ctx.rotation.projects)
    return passed(
        f"{ctx.rotation.subject} {ctx.rotation.new_version} and its {len(ctx.rotation.pins)} "
        f"pinned binaries confirmed in {projects} project{'s' if projects != 1 else ''}",
        output,
    )
