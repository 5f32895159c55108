"""Pure planning for npm package families (sharp and its `@img/*` binaries), per project.

No I/O.  The watcher hands in, for each project, the parsed manifests and lockfile, plus the
parent's packument and the clock.  For each project this module finds where the parent is
declared (dependencies of the root or a workspace, or forced through the manager's overrides:
npm `overrides`, pnpm's, Yarn's `resolutions`), which locked
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
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from typing import Literal

import nodesemver
import semver

from bot.errors import UsageError
from bot.manifests.locked import ROOT_IMPORTER, LockedPackage, LockedTree
from bot.manifests.overrides import Target, npm_override
from bot.manifests.package_json import Manifest, respec
from bot.models import (
    LATER_CYCLE,
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
    describe_duration,
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
    # the runbook's name templates (`@img/sharp-{platform}`): a name matching one is a pin of the
    # family on any platform, configured or not (a repository may pin darwin-arm64 too)
    pin_templates: tuple[str, ...] = ()
    # held back by `/rotate ignore`: a line (`0.35`) or a version (`0.35.2`) → why
    held: Mapping[str, str] = field(default_factory=dict)

    def is_pin(self, name: str) -> bool:
        """Whether `name` is one of the family's platform packages."""
        return name in self.pin_names or any(
            _template(template).fullmatch(name) for template in self.pin_templates
        )


@cache
def _template(template: str) -> re.Pattern[str]:
    """A `{platform}` name template as a regex over package names."""
    return re.compile(re.escape(template).replace(re.escape("{platform}"), "[a-z0-9][a-z0-9-]*"))


def held_reason(version: str, held: Mapping[str, str]) -> str | None:
    """Why `version` is held back, if a held line or version covers it."""
    for selector, reason in held.items():
        if version == selector or version.startswith(f"{selector}."):
            return reason
    return None


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
    """A string in a manifest that holds a version spec for `name` (`selector`: the version
    range of an overrides key like `sharp@0.33`, empty when the key is the bare name)."""

    manifest: str
    location: tuple[str, ...]
    name: str
    spec: str
    selector: str = ""

    @property
    def path(self) -> str:
        """The site as `file field.key`, for messages."""
        return f"{self.manifest} {'.'.join(self.location)}"


@dataclass(frozen=True)
class Survey:
    """Where a family lives in one project: declarations, overrides, pins, locked copies."""

    input: ProjectInput
    status: ProjectStatus
    declarations: tuple[Site, ...]
    overrides: tuple[Site, ...]
    pin_sites: tuple[Site, ...]
    script_keys: tuple[tuple[str, tuple[str, ...]], ...] = field(default=())
    # overrides that apply to every copy of the parent (top-level keys, `"."` included)
    flat: tuple[Site, ...] = ()
    # False: the project pins the family's binaries without installing the parent
    installs_parent: bool = True


def _holder_name(lock: LockedTree, holder: str) -> str:
    package = lock.package(holder)
    if package is not None:
        return f"{package.name}@{package.version}"
    return "the project root" if holder == ROOT_IMPORTER else f"workspace {holder}"


def _applies(site: Site, version: str) -> bool:
    """Whether an override keyed with `site.selector` applies to a copy at `version`."""
    return not site.selector or bool(nodesemver.satisfies(version, site.selector, loose=False))


def _override_sites(item: ProjectInput, name: str) -> tuple[list[Site], list[tuple[str, Site]]]:
    """(flat, nested) override sites for `name`, keyed by name or `name@selector`: a flat one
    (`"sharp": …`, `"sharp": {".": …}`, pnpm's `sharp`, Yarn's `**/sharp`) applies to every
    copy; a nested one (`"next": {"sharp": …}`, `next>sharp`, `next/sharp`) to the copies its
    parent holds."""
    flat: list[Site] = []
    nested: list[tuple[str, Site]] = []
    depth = len(item.override_field)
    for location, spec in item.overrides.strings_under(item.override_field):
        target = item.override_target(location[depth:])
        if target is None or target.name != name:
            continue
        site = Site(item.overrides_path, location, name, spec, target.selector)
        if target.holder is None:
            flat.append(site)
        else:
            nested.append((target.holder, site))
    return flat, nested


def _dereference(item: ProjectInput, site: Site) -> Site:
    """The site a referring spec (pnpm `catalog:`) names, when it exists; `site` otherwise."""
    for path, location in item.spec_reference(site.name, site.spec):
        document = item.manifests.get(path)
        value = document.get(location) if document is not None else None
        if isinstance(value, str):
            return Site(path, location, site.name, value)
    return site


def _pin_sites(item: ProjectInput, policy: FamilyPolicy) -> tuple[Site, ...]:
    """Every pin of a family binary: in a dependency field of any manifest of the project, or
    anywhere in the project's overrides (flat, or nested under the parent)."""
    depth = len(item.override_field)
    return tuple(
        Site(path, (field_name, pin), pin, spec)
        for path, manifest in item.manifests.items()
        for field_name in DEPENDENCY_FIELDS
        if isinstance(manifest.data.get(field_name), dict)
        for pin, spec in manifest.data[field_name].items()
        if policy.is_pin(pin) and isinstance(spec, str)
    ) + tuple(
        Site(item.overrides_path, location, target.name, spec)
        for location, spec in item.overrides.strings_under(item.override_field)
        if (target := item.override_target(location[depth:])) is not None
        and policy.is_pin(target.name)
    )


def _pin_notes(
    pin_sites: Sequence[Site],
    expected: Mapping[str, str],
    locked: Mapping[str, LockedPackage],
    name: str,
    current: str,
    manager: str,
) -> list[str]:
    """One note per pin that disagrees with what the parent at `current` declares (`manager`:
    the package manager that loads the pinned package today)."""
    notes = []
    for site in pin_sites:
        wanted = expected.get(site.name)
        if not wanted or site.spec.startswith("$") or respec(site.spec, wanted) == site.spec:
            continue
        loads = locked.get(site.name)
        today = f" ({manager} loads {loads.key} {loads.version} today)" if loads is not None else ""
        notes.append(
            f"{site.path} is {site.spec!r} but {name} {current} needs {wanted}; the rotation "
            f"realigns it{today}"
        )
    return notes


def _survey_pins_only(
    item: ProjectInput, parent: Packument, policy: FamilyPolicy, pin_sites: tuple[Site, ...]
) -> Survey | Skipped:
    """A project that pins the family's binaries without installing the parent (it loads the
    parent at run time, or bundles it): the parent release those pins belong to is the one
    whose `optionalDependencies` declare them at their locked versions."""
    project, lock, name = item.project, item.lock, policy.parent
    locked = lock.reachable(lock.importers, policy.is_pin)
    releases = sorted(
        {
            package.version
            for pin, package in locked.items()
            if package.version in parent.versions
            and parent.manifest(package.version).optional_dependencies.get(pin) == package.version
        },
        key=semver.Version.parse,
    )
    files = ", ".join(sorted({site.manifest for site in pin_sites}))
    if not releases:
        return Skipped(
            project.label,
            f"{files} pin{'s' if ',' not in files else ''} {name}'s binaries "
            f"({', '.join(sorted({site.name for site in pin_sites}))}), but no {name} release in "
            f"{parent.host} declares them at the versions {project.lockfile} locks; run "
            f"{item.install_command} and commit the lockfile, or declare {name}",
        )
    current = releases[0]
    notes = [
        f"{name} is not installed by this project: {files} pin{'s' if ',' not in files else ''} "
        f"its binaries, rotated to what {name}'s own optionalDependencies declare"
    ]
    declared = parent.manifest(current).optional_dependencies
    notes += _pin_notes(pin_sites, declared, locked, name, current, project.manager)
    names = [*policy.pin_names, *(s.name for s in pin_sites if s.name not in policy.pin_names)]
    status = ProjectStatus(
        project=project,
        current_version=current,
        pins=tuple(Pin(pin, locked[pin].version) for pin in dict.fromkeys(names) if pin in locked),
        pinned=True,
        notes=tuple(notes),
    )
    return Survey(item, status, (), (), pin_sites, installs_parent=False)


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
    pin_sites = _pin_sites(item, policy)
    copies = lock.find(name)
    if not declarations and not flat and not nested:
        if not copies:
            return _survey_pins_only(item, parent, policy, pin_sites) if pin_sites else None
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
        forced = any(_applies(site, copy.version) for site in flat) or any(
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
    if not versions and kept and not declarations:
        ranges = ", ".join(f"{site.path}" for site in (*flat, *(site for _, site in nested)))
        held = ", ".join(f"{copy.holder} holds {copy.version}" for copy in kept)
        return Skipped(
            label,
            f"{ranges} reach{'es' if ',' not in ranges else ''} no locked copy of {name} "
            f"({held}); not managed here (widen the override's range to rotate it)",
        )
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
    sharp_key = controlled[0]
    locked = lock.reachable([sharp_key], policy.is_pin)
    expected = parent.manifest(current).optional_dependencies if current in parent.versions else {}
    notes = []
    if not declarations:
        bringers = sorted(
            {
                _holder_name(lock, edge.holder)
                for key in controlled
                for edge in lock.dependents(key)
                if lock.package(edge.holder) is not None
            }
        )
        forcing = ", ".join(".".join(site.location) for site in flat) or (
            ", ".join(".".join(site.location) for _, site in nested)
        )
        notes.append(
            f"{name} is not declared: {', '.join(bringers) or 'another package'} bring"
            f"{'s' if len(bringers) == 1 else ''} it and {item.overrides_path} {forcing} "
            "forces it"
        )
    for site in (*flat, *(site for _, site in nested)):
        if site.spec.startswith("$"):
            notes.append(f"{site.path} is {site.spec!r}: it follows the declaration")
    notes += _pin_notes(pin_sites, expected, locked, name, current, project.manager)
    names = [*policy.pin_names, *(s.name for s in pin_sites if s.name not in policy.pin_names)]
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
        pins=tuple(Pin(pin, locked[pin].version) for pin in dict.fromkeys(names) if pin in locked),
        pinned=bool(pin_sites),
        kept=tuple(kept),
        notes=tuple(notes),
    )
    overrides = tuple(flat) + tuple(site for _, site in nested)
    return Survey(item, status, declarations, overrides, pin_sites, script_keys, flat=tuple(flat))


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
        if (why := held_reason(release.version, policy.held)) is not None:
            skipped.append(Skipped(subject, why))
            continue
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
                        "the minimum release age "
                        f"{describe_duration(policy.minimum_release_age)}; {LATER_CYCLE}",
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


@dataclass(frozen=True)
class _ProjectEdits:
    """What moving one project takes: the edits, and the pins it could add but does not."""

    edits: tuple[ManifestEdit, ...]
    unpinned: tuple[str, ...]
    suggested: tuple[ManifestEdit, ...]
    notes: tuple[str, ...]


def _pin_inserts(
    found: Survey, names: Sequence[str], wanted: Mapping[str, str]
) -> tuple[ManifestEdit, ...]:
    """Inserts that pin `names` beside the project's existing pins (same object), or, when it
    has none, in the manager's override field (of the root package.json, or of the file that
    holds the project's overrides)."""
    if found.pin_sites:
        anchor = found.pin_sites[0]
        container = anchor.location[:-1]
        return tuple(
            ManifestEdit(anchor.manifest, (*container, name), "insert", "", wanted[name])
            for name in names
        )
    where = found.input.overrides_path
    field_path = found.input.override_field
    if isinstance(found.input.overrides.get(field_path), dict):
        return tuple(
            ManifestEdit(where, (*field_path, name), "insert", "", wanted[name]) for name in names
        )
    block = json.dumps({name: wanted[name] for name in names})
    return (ManifestEdit(where, field_path, "insert", "", block),)


def _reaches_every_copy(edit: ManifestEdit) -> bool:
    """A pin in overrides (flat or under the parent) applies to every copy of the parent; one
    in a dependency field only to the copy that resolves it."""
    return edit.location[0] not in DEPENDENCY_FIELDS


def _edits(
    found: Survey, target: str, pins: Sequence[PinChange], parent: Packument, policy: FamilyPolicy
) -> _ProjectEdits | Skipped:
    """The manifest edits that move one project to `target` with `pins`."""
    label = found.input.project.label
    name = policy.parent
    root = found.input.project.path("package.json")
    edits: list[ManifestEdit] = []
    specs: list[str] = []
    for site in (*found.declarations, *found.overrides):
        if site.spec.startswith("$"):
            continue
        new_spec = respec(site.spec, target)
        if new_spec is None:
            return Skipped(
                label,
                f"{site.manifest}: {'.'.join(site.location)} is {site.spec!r}; rotation-bot "
                "rewrites exact, ^, ~ and >= specs only: use one of those",
            )
        if not new_spec.startswith(">=") and not _resolves_to(parent, new_spec, target):
            new_spec = target  # a range that would pick a newer (too young) release
        specs.append(new_spec)
        if new_spec != site.spec:
            edits.append(ManifestEdit(site.manifest, site.location, "value", site.spec, new_spec))
    if specs and not any(_resolves_to(parent, spec, target) for spec in specs):
        newest = nodesemver.max_satisfying(
            [version for version in parent.versions if "-" not in version], specs[0], loose=False
        )
        return Skipped(
            label,
            f"every spec of {name} in {root} is a floor ({', '.join(sorted(set(specs)))}): "
            f"{found.input.project.manager} would install {name} {newest}, not {target}; "
            f"declare {name} exactly or with ^ "
            f'(e.g. "^{target}")',
        )
    # EOVERRIDE: a top-level override of a direct dependency must equal its spec (or be `$name`)
    declared = {
        edit.new
        for edit in edits
        if edit.manifest == root and edit.location[0] in DEPENDENCY_FIELDS
    }
    if len(declared) == 1 and found.input.overrides_follow_dependencies:
        (spec,) = declared
        flat = {site.location for site in found.flat}
        edits = [
            ManifestEdit(edit.manifest, edit.location, edit.kind, edit.previous, spec)
            if edit.location in flat
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
    other_versions = [kept for kept in found.status.kept if kept.version != target]
    for site in found.pin_sites:
        if other_versions and _reaches_every_copy(
            ManifestEdit(site.manifest, site.location, "value", "", "")
        ):
            kept = other_versions[0]
            return Skipped(
                label,
                f"{kept.holder} keeps {name} {kept.version} ({kept.spec}), and the pins in "
                f"{root} {'.'.join(site.location[:-1])} apply to every copy: {name} "
                f"{kept.version} would load binaries built for {target}; move the pins to "
                f'"optionalDependencies" of {root} or align the copies',
            )
    present = {site.name for site in found.pin_sites}
    unpinned = tuple(pin for pin in policy.pin_names if pin not in present)
    notes: list[str] = []
    inserts = _pin_inserts(found, unpinned, wanted) if unpinned else ()
    if other_versions and any(_reaches_every_copy(edit) for edit in inserts):
        kept = other_versions[0]
        notes.append(
            f"no pin block is offered: pins in {'.'.join(inserts[0].location[:1])} would apply "
            f"to the copy of {name} {kept.version} that {kept.holder} holds as well"
        )
        inserts = ()
    if policy.add_pins:
        edits += inserts
        unpinned, inserts = (), ()
    for manifest, location in found.script_keys:
        edits.append(ManifestEdit(manifest, location, "key", location[-1], f"{name}@{target}"))
    return _ProjectEdits(tuple(edits), unpinned, tuple(inserts), tuple(notes))


def _project_pins(
    found: Survey, parent: Packument, version: str, pins: Sequence[PinChange], policy: FamilyPolicy
) -> tuple[PinChange, ...] | Skipped:
    """The configured pins, plus every other platform the project itself pins, with the
    project's own locked versions as the previous ones."""
    before = {pin.name: pin.version for pin in found.status.pins}
    declared = parent.manifest(version).optional_dependencies
    changes = [PinChange(pin.name, before.get(pin.name) or None, pin.new_version) for pin in pins]
    for site in found.pin_sites:
        if site.name in policy.pin_names or any(c.name == site.name for c in changes):
            continue
        if site.name not in declared:
            return Skipped(
                found.input.project.label,
                f"{site.path} pins {site.name}, which {policy.parent}@{version} does not "
                "publish; remove that pin to rotate",
            )
        new_version = strict_version(declared[site.name], source=f"{parent.host} ({site.name})")
        changes.append(PinChange(site.name, before.get(site.name) or None, new_version))
    return tuple(changes)


def _for_target(skipped: Skipped, parent: str, version: str) -> Skipped:
    """A project's reason to stay out of the rotation to `parent@version`."""
    return Skipped(f"{skipped.subject} → {parent}@{version}", skipped.reason)


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
            project_pins = _project_pins(found, parent, version, pins, policy)
            if isinstance(project_pins, Skipped):
                notes.append(_for_target(project_pins, policy.parent, version))
                continue
            moved = _edits(found, version, project_pins, parent, policy)
            if isinstance(moved, Skipped):
                notes.append(_for_target(moved, policy.parent, version))
                continue
            parts.append(
                ProjectRotation(
                    project=found.input.project,
                    previous_version=found.status.current_version,
                    new_version=version,
                    pins=project_pins,
                    pinned=found.status.pinned or policy.add_pins,
                    edits=moved.edits,
                    kept=found.status.kept,
                    notes=(*found.status.notes, *moved.notes),
                    unpinned=moved.unpinned,
                    suggested=moved.suggested,
                    installs_parent=found.installs_parent,
                )
            )
        if not parts:
            continue
        kinds = {
            kind for found, kind in members if any(p.project == found.input.project for p in parts)
        }
        previous = sorted({part.previous_version for part in parts}, key=semver.Version.parse)
        every_pin = {pin.name: pin for part in parts for pin in part.pins}
        rotations.append(
            Rotation(
                runbook=policy.runbook,
                kind="major" if "major" in kinds else "patch",
                subject=policy.parent,
                previous_version=previous[0],
                new_version=version,
                branch=f"rotation-bot/{policy.runbook}-{version}",
                pins=(*pins, *(pin for n, pin in every_pin.items() if n not in policy.pin_names)),
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
