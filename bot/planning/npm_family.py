"""Pure planning for npm package families (sharp and its `@img/*` binaries), per project.

No I/O.  The watcher hands in, for each project, the parsed manifests and lockfile, plus the
parent's packument and the clock.  For each project this module finds where the parent is
declared (dependencies of the root or a workspace, or forced through `overrides`), which locked
copies the repository controls (and which another package holds at its own range), the current
version and pins; then decides the patch target (newest release on the current line) and the
major target (the next line, or the newest with `major: latest`), derives each target's pin set
from the parent's own `optionalDependencies` at that version, and computes the exact manifest
edits that move every controlled place: an exact pin stays exact, a caret's floor is raised,
`$name` references are left alone, and an override of a direct dependency moves with it
(npm's EOVERRIDE rule).  One rotation per target version covers every project on that line.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

import nodesemver
import semver

from bot.errors import UsageError
from bot.manifests.locked import ROOT_IMPORTER, LockedTree
from bot.manifests.overrides import Target, npm_override
from bot.manifests.package_json import Manifest, respec
from bot.models import (
    KeptCopy,
    ManifestEdit,
    Pin,
    PinChange,
    Plan,
    Project,
    ProjectRotation,
    ProjectStatus,
    Release,
    Rotation,
    Skipped,
    strict_version,
)
from bot.sources.npm.models import Packument

Line = tuple[int, ...]
DEPENDENCY_FIELDS = ("dependencies", "devDependencies", "optionalDependencies")
# approvals of install scripts that may name a version: npm 11's `allowScripts` (package.json),
# pnpm 11's `allowBuilds` (pnpm-workspace.yaml)
SCRIPT_FIELDS = ("allowScripts", "allowBuilds")
MajorPolicy = Literal["off", "next", "latest"]


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
    major: MajorPolicy = "next"
    add_pins: bool = False


@dataclass(frozen=True)
class ProjectInput:
    """One project as the watcher read it at the base commit.

    `manifests` holds every package.json of the project, and the file with its overrides when
    that is not package.json (pnpm-workspace.yaml).  The overrides are `override_field` of
    `override_manifest` (default: the root package.json), their keys read in the manager's
    syntax (`override_target`); `overrides_follow_dependencies` is npm's EOVERRIDE rule;
    `install_command` is what a user runs to refresh the lockfile; `spec_reference` says where
    a declaration like pnpm's `catalog:` really keeps its version (that document is in
    `manifests`)."""

    project: Project
    manifests: Mapping[str, Manifest]
    lock: LockedTree
    override_field: tuple[str, ...] = ("overrides",)
    override_manifest: str | None = None
    override_target: Callable[[tuple[str, ...]], Target | None] = npm_override
    overrides_follow_dependencies: bool = True
    install_command: str = "npm install"
    # where a spec that refers elsewhere lives (pnpm `catalog:`), as (file, key path) candidates
    spec_reference: Callable[[str, str], tuple[tuple[str, tuple[str, ...]], ...]] = (
        lambda name, spec: ()
    )

    @property
    def root(self) -> Manifest:
        """The project root's package.json."""
        return self.manifests[self.project.path("package.json")]

    @property
    def overrides_path(self) -> str:
        """The file holding the project's overrides."""
        return self.override_manifest or self.project.path("package.json")

    @property
    def overrides(self) -> Manifest:
        """The document holding the project's overrides."""
        return self.manifests[self.overrides_path]


@dataclass(frozen=True)
class Site:
    """A string in a manifest that holds a version spec for `name`."""

    manifest: str
    location: tuple[str, ...]
    name: str
    spec: str


@dataclass(frozen=True)
class Survey:
    """Where a family lives in one project: declarations, overrides, pins, locked copies."""

    input: ProjectInput
    status: ProjectStatus
    declarations: tuple[Site, ...]
    overrides: tuple[Site, ...]
    pin_sites: tuple[Site, ...]
    script_keys: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())


def _holder_name(lock: LockedTree, holder: str) -> str:
    package = lock.package(holder)
    if package is not None:
        return f"{package.name}@{package.version}"
    return "the project root" if holder == ROOT_IMPORTER else f"workspace {holder}"


def _override_sites(item: ProjectInput, name: str) -> tuple[list[Site], list[tuple[str, Site]]]:
    """(flat, nested) override sites for `name`: a flat one (`"sharp": …`, `"sharp": {".": …}`,
    pnpm's `sharp`, Yarn's `**/sharp`) applies to every copy; a nested one (`next>sharp`,
    `next/sharp`) to the copies its parent holds."""
    flat: list[Site] = []
    nested: list[tuple[str, Site]] = []
    depth = len(item.override_field)
    for location, spec in item.overrides.strings_under(item.override_field):
        target = item.override_target(location[depth:])
        if target is None or target[1] != name:
            continue
        holder, _ = target
        site = Site(item.overrides_path, location, name, spec)
        if holder is None:
            flat.append(site)
        else:
            nested.append((holder, site))
    return flat, nested


def _dereference(item: ProjectInput, site: Site) -> Site:
    """The site a referring spec (pnpm `catalog:`) names, when it exists; `site` otherwise."""
    for path, location in item.spec_reference(site.name, site.spec):
        document = item.manifests.get(path)
        value = document.get(location) if document is not None else None
        if isinstance(value, str):
            return Site(path, location, site.name, value)
    return site


def survey(item: ProjectInput, parent: Packument, policy: FamilyPolicy) -> Survey | Skipped | None:
    """Where the family lives in one project; None when the project has nothing of it."""
    project, lock, name = item.project, item.lock, policy.parent
    label = project.label
    declarations = tuple(
        dict.fromkeys(
            _dereference(
                item, Site(path, (field_name, name), name, manifest.data[field_name][name])
            )
            for path, manifest in item.manifests.items()
            for field_name in DEPENDENCY_FIELDS
            if isinstance(manifest.data.get(field_name), dict)
            and isinstance(manifest.data[field_name].get(name), str)
        )
    )
    root_path = project.path("package.json")
    flat, nested = _override_sites(item, name)
    copies = lock.find(name)
    if not declarations and not flat and not nested:
        if not copies:
            return None
        if any(
            lock.package(edge.holder) is None for c in copies for edge in lock.dependents(c.key)
        ):
            return Skipped(
                label,
                f"{project.lockfile} says the project depends on {name}, but no package.json of "
                f"it declares {name}: the lockfile is out of date; run {item.install_command} "
                "and commit it",
            )
        holders = sorted(
            {_holder_name(lock, edge.holder) for c in copies for edge in lock.dependents(c.key)}
        )
        return Skipped(
            f"{label}",
            f"{name} arrives only through {', '.join(holders) or 'another package'}; not "
            f'managed here (declare {name} or add an "{name}" override to rotate it)',
        )
    nested_holders = {holder for holder, _ in nested}
    controlled: list[str] = []
    kept: list[KeptCopy] = []
    for copy in copies:
        edges = lock.dependents(copy.key)
        direct = any(lock.package(edge.holder) is None for edge in edges)
        forced = bool(flat) or any(
            (lock.package(edge.holder) or copy).name in nested_holders for edge in edges
        )
        if direct or forced or not edges:
            controlled.append(copy.key)
        else:
            for edge in edges:
                kept.append(
                    KeptCopy(copy.key, copy.version, _holder_name(lock, edge.holder), edge.spec)
                )
    versions = sorted({lock.package(key).version for key in controlled if lock.package(key)})  # type: ignore[union-attr]
    if not versions:
        return Skipped(
            label,
            f"{project.lockfile} has no {name} entry although {root_path} asks for it; run "
            f"{item.install_command} and commit the lockfile",
        )
    if len(versions) > 1:
        return Skipped(
            label,
            f"{name} is locked at {', '.join(versions)} in {project.lockfile}; align the copies "
            "the repository controls first",
        )
    current = versions[0]
    if not semver.Version.is_valid(current):
        return Skipped(label, f"{project.lockfile} locks {name} at {current!r}, not a version")
    pin_names = set(policy.pin_names)
    pin_sites = tuple(
        Site(path, (field_name, pin), pin, spec)
        for path, manifest in item.manifests.items()
        for field_name in DEPENDENCY_FIELDS
        if isinstance(manifest.data.get(field_name), dict)
        for pin, spec in manifest.data[field_name].items()
        if pin in pin_names and isinstance(spec, str)
    ) + tuple(
        Site(item.overrides_path, location, override[1], spec)
        for location, spec in item.overrides.strings_under(item.override_field)
        if (override := item.override_target(location[len(item.override_field) :])) is not None
        and override[1] in pin_names
    )
    sharp_key = controlled[0]
    locked_pins = []
    for pin in policy.pin_names:
        target = next(
            (
                edge.target
                for edge in lock.edges
                if edge.holder == sharp_key and edge.name == pin and edge.target
            ),
            None,
        )
        package = lock.package(target) if target else None
        locked_pins.append(Pin(pin, package.version if package else ""))
    notes = []
    expected = parent.manifest(current).optional_dependencies if current in parent.versions else {}
    for site in pin_sites:
        wanted = expected.get(site.name)
        if wanted and not site.spec.startswith("$") and respec(site.spec, wanted) != site.spec:
            notes.append(
                f"{site.manifest} {'.'.join(site.location)} is {site.spec!r} but {name} "
                f"{current} needs {wanted}; the rotation realigns it"
            )
    script_keys = tuple(
        (path, (field_name, key))
        for path, manifest in item.manifests.items()
        for field_name in SCRIPT_FIELDS
        if isinstance(manifest.data.get(field_name), dict)
        for key in manifest.data[field_name]
        if key == f"{name}@{current}"
    )
    status = ProjectStatus(
        project=project,
        current_version=current,
        pins=tuple(pin for pin in locked_pins if pin.version),
        pinned=bool(pin_sites),
        kept=tuple(kept),
        notes=tuple(notes),
    )
    overrides = tuple(flat) + tuple(site for _, site in nested)
    return Survey(item, status, declarations, overrides, pin_sites, script_keys)


def _eligible(
    releases: Iterable[Release], floor: str, now: datetime, policy: FamilyPolicy
) -> tuple[list[Release], list[Skipped]]:
    ready: list[Release] = []
    skipped: list[Skipped] = []
    lowest = semver.Version.parse(floor)
    for release in releases:
        version = semver.Version.parse(release.version)
        if version <= lowest or version.prerelease or version.build:
            continue
        subject = f"{policy.parent}@{release.version}"
        if release.deprecated:
            skipped.append(Skipped(subject, f"deprecated: {release.deprecated}"))
            continue
        if policy.minimum_release_age > timedelta(0):
            if release.published_at is None:
                skipped.append(Skipped(subject, "the registry gives no publish time"))
                continue
            if now - release.published_at < policy.minimum_release_age:
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
    parent: Packument, version: str, previous: Sequence[Pin], policy: FamilyPolicy
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
            previous_version=before.get(name) or None,
            new_version=strict_version(declared[name], source=f"{parent.host} ({name})"),
        )
        for name in policy.pin_names
    )


def _resolves_to(parent: Packument, spec: str, target: str) -> bool:
    published = [version for version in parent.versions if "-" not in version]
    return bool(nodesemver.max_satisfying(published, spec, loose=False) == target)


def _edits(
    found: Survey, target: str, pins: Sequence[PinChange], parent: Packument, policy: FamilyPolicy
) -> tuple[ManifestEdit, ...] | Skipped:
    """The manifest edits that move one project to `target` with `pins`."""
    label = found.input.project.label
    edits: list[ManifestEdit] = []
    for site in (*found.declarations, *found.overrides):
        if site.spec.startswith("$"):
            continue
        new_spec = respec(site.spec, target)
        if new_spec is None:
            return Skipped(
                label,
                f"{site.manifest}: {'.'.join(site.location)} is {site.spec!r}; rotation-bot "
                f"rewrites exact, ^ and ~ specs only: use one of those",
            )
        if not _resolves_to(parent, new_spec, target):
            new_spec = target
        if new_spec != site.spec:
            edits.append(ManifestEdit(site.manifest, site.location, "value", site.spec, new_spec))
    # EOVERRIDE: an override of a direct dependency must equal that dependency's spec
    root = found.input.project.path("package.json")
    direct = {
        edit.new
        for edit in edits
        if edit.manifest == root and edit.location[0] in DEPENDENCY_FIELDS
    }
    if len(direct) == 1 and found.input.overrides_follow_dependencies:
        (declared,) = direct
        edits = [
            ManifestEdit(edit.manifest, edit.location, edit.kind, edit.previous, declared)
            if edit.location[0] not in DEPENDENCY_FIELDS and edit.manifest == root
            else edit
            for edit in edits
        ]
    wanted = {pin.name: pin.new_version for pin in pins}
    for site in found.pin_sites:
        if site.spec.startswith("$"):
            continue
        new_spec = respec(site.spec, wanted[site.name])
        if new_spec is None:
            return Skipped(
                label,
                f"{site.manifest}: {'.'.join(site.location)} is {site.spec!r}; pin it exactly "
                'or with ^ (e.g. "0.33.5")',
            )
        if new_spec != site.spec:
            edits.append(ManifestEdit(site.manifest, site.location, "value", site.spec, new_spec))
    present = {site.name for site in found.pin_sites}
    missing = [name for name in policy.pin_names if name not in present]
    if found.pin_sites and missing:
        anchor = found.pin_sites[0]
        for name in missing:
            edits.append(
                ManifestEdit(
                    anchor.manifest, (*anchor.location[:-1], name), "insert", "", wanted[name]
                )
            )
    elif not found.pin_sites and policy.add_pins:
        field_path = found.input.override_field
        existing = found.input.overrides.get(field_path)
        where = found.input.overrides_path
        if isinstance(existing, dict):
            for name in policy.pin_names:
                edits.append(ManifestEdit(where, (*field_path, name), "insert", "", wanted[name]))
        else:
            block = json.dumps({name: wanted[name] for name in policy.pin_names})
            edits.append(ManifestEdit(where, field_path, "insert", "", block))
    for manifest, location in found.script_keys:
        edits.append(
            ManifestEdit(manifest, location, "key", location[-1], f"{policy.parent}@{target}")
        )
    flat_pins = [site for site in found.pin_sites if site.location[0] not in DEPENDENCY_FIELDS]
    if flat_pins:
        for kept in found.status.kept:
            if kept.version != target:
                return Skipped(
                    label,
                    f"{kept.holder} keeps {policy.parent} {kept.version} ({kept.spec}), and the "
                    f"pins in {root} apply to every copy: {policy.parent} {kept.version} would "
                    f"load binaries built for {target}; scope the pins under "
                    f'"{policy.parent}" in overrides or align the copies',
                )
    return tuple(edits)


def plan_family(
    *,
    repo: str,
    base_commit: str,
    inputs: Sequence[ProjectInput],
    parent: Packument,
    policy: FamilyPolicy,
    now: datetime,
    target: str | None = None,
    skipped: Sequence[Skipped] = (),
) -> Plan:
    """Decide the rotations of every project (or the one explicit `target`)."""
    notes: list[Skipped] = list(skipped)
    surveys: list[Survey] = []
    for item in inputs:
        found = survey(item, parent, policy)
        if isinstance(found, Skipped):
            notes.append(found)
        elif found is not None:
            surveys.append(found)
    if not surveys:
        if not notes:
            notes.append(Skipped(policy.runbook, f"no project depends on {policy.parent}"))
        return Plan(repo, policy.runbook, base_commit, None, (), (), tuple(notes))
    floor = min((found.status.current_version for found in surveys), key=semver.Version.parse)
    releases, too_young = _eligible(parent.releases(), floor, now, policy)
    notes.extend(too_young)
    by_target: dict[str, list[tuple[Survey, Literal["patch", "major"]]]] = {}
    if target is not None and not any(release.version == target for release in releases):
        reason = next(
            (item.reason for item in too_young if item.subject.endswith(f"@{target}")), None
        )
        raise UsageError(
            f"{policy.parent}@{target} is not a valid target "
            f"({reason or f'not a stable release newer than {floor}'})"
        )
    lines = sorted({line_of(release.version) for release in releases})
    for found in surveys:
        current = found.status.current_version
        newer = [
            r for r in releases if semver.Version.parse(r.version) > semver.Version.parse(current)
        ]
        if target is not None:
            if any(r.version == target for r in newer):
                kind: Literal["patch", "major"] = (
                    "patch" if line_of(target) == line_of(current) else "major"
                )
                by_target.setdefault(target, []).append((found, kind))
            continue
        same = [r for r in newer if line_of(r.version) == line_of(current)]
        if same:
            by_target.setdefault(same[-1].version, []).append((found, "patch"))
        later = [line for line in lines if line > line_of(current)]
        if later and policy.major != "off":
            chosen = later[0] if policy.major == "next" else later[-1]
            newest = [r for r in newer if line_of(r.version) == chosen][-1]
            by_target.setdefault(newest.version, []).append((found, "major"))
            if chosen != later[-1]:
                latest = [r for r in newer if line_of(r.version) == later[-1]][-1]
                notes.append(
                    Skipped(
                        f"{policy.parent}@{latest.version}",
                        f"the newest line; {found.input.project.label} is offered the next "
                        f"line ({newest.version}) first (runbooks.{policy.runbook}.major: latest "
                        "proposes the newest line directly)",
                    )
                )
    rotations: list[Rotation] = []
    release_of = {release.version: release for release in releases}
    for version in sorted(by_target, key=semver.Version.parse):
        members = by_target[version]
        first = members[0][0].status
        pins = derive_pins(parent, version, first.pins, policy)
        if isinstance(pins, Skipped):
            notes.append(pins)
            continue
        parts: list[ProjectRotation] = []
        for found, _ in members:
            before = {pin.name: pin.version for pin in found.status.pins}
            project_pins = tuple(
                PinChange(pin.name, before.get(pin.name) or None, pin.new_version) for pin in pins
            )
            edits = _edits(found, version, project_pins, parent, policy)
            if isinstance(edits, Skipped):
                notes.append(Skipped(f"{edits.subject} → {policy.parent}@{version}", edits.reason))
                continue
            parts.append(
                ProjectRotation(
                    project=found.input.project,
                    previous_version=found.status.current_version,
                    new_version=version,
                    pins=project_pins,
                    pinned=found.status.pinned,
                    edits=edits,
                    kept=found.status.kept,
                )
            )
        if not parts:
            continue
        kinds = {
            kind for found, kind in members if any(p.project == found.input.project for p in parts)
        }
        previous = sorted({part.previous_version for part in parts}, key=semver.Version.parse)
        rotations.append(
            Rotation(
                runbook=policy.runbook,
                kind="major" if "major" in kinds else "patch",
                subject=policy.parent,
                previous_version=previous[0],
                new_version=version,
                branch=f"rotation-bot/{policy.runbook}-{version}",
                pins=pins,
                release=release_of[version],
                projects=tuple(parts),
            )
        )
    currents = {found.status.current_version for found in surveys}
    return Plan(
        repo=repo,
        runbook=policy.runbook,
        base_commit=base_commit,
        current_version=currents.pop() if len(currents) == 1 else None,
        current_pins=surveys[0].status.pins,
        rotations=tuple(rotations),
        skipped=tuple(notes),
        projects=tuple(found.status for found in surveys),
    )
