"""Step `bump-overrides`: set the `overrides` pins to the derived pin set and make sure the
parent itself resolves to the target (raise the dependency's floor, or pin it exactly when the
raised range would admit a newer release than the target)."""

from __future__ import annotations

from dataclasses import asdict

import nodesemver

from bot.errors import StepFailed
from bot.manifests.package_json import (
    PackageJson,
    Path_,
    bump_spec,
    insert_member,
    replace_values,
)
from bot.models import StepResult
from bot.steps.registry import StepContext, passed, step


def _parent_spec(ctx: StepContext, document: PackageJson) -> tuple[Path_, str, str]:
    rotation = ctx.rotation
    declared = document.dependency_spec(rotation.subject)
    if declared is None:
        raise StepFailed(f"package.json no longer declares {rotation.subject}")
    field, spec = declared
    new_spec = bump_spec(spec, rotation.new_version, source="package.json", name=rotation.subject)
    published = [
        version for version in ctx.npm.packument(rotation.subject).versions if "-" not in version
    ]
    if nodesemver.max_satisfying(published, new_spec, loose=False) != rotation.new_version:
        new_spec = rotation.new_version
    return (field, rotation.subject), spec, new_spec


@step("bump-overrides")
def bump_overrides(ctx: StepContext) -> StepResult:
    """Rewrite package.json in the worktree; verify by re-reading it."""
    path = ctx.worktree / "package.json"
    text = path.read_text(encoding="utf-8")
    document = PackageJson.parse(text)
    rotation = ctx.rotation
    wanted = {pin.name: pin.new_version for pin in rotation.pins}
    places = document.override_pins({*wanted, rotation.subject, "."})
    changes: dict[Path_, str] = {}
    for name, version in wanted.items():
        for location, value in places.get(name, []):
            if value != version:
                changes[location] = version
    for location, _ in [*places.get(rotation.subject, []), *places.get(".", [])]:
        if location[-1] == rotation.subject or location[-2:] == (rotation.subject, "."):
            changes[location] = rotation.new_version
    dependency, previous_spec, new_spec = _parent_spec(ctx, document)
    changes[dependency] = new_spec
    new_text = replace_values(document, changes)
    for name in sorted(set(wanted) - set(places)):
        new_text = insert_member(PackageJson.parse(new_text), ("overrides",), name, wanted[name])
    if new_text == text:
        raise StepFailed("Expected package.json to change, but the pins were already there")
    written = PackageJson.parse(new_text)
    pinned = {pin.name: pin.version for pin in written.pins(set(wanted))}
    if pinned != wanted or written.dependency_spec(rotation.subject) != (dependency[0], new_spec):
        raise StepFailed(f"package.json does not hold the pins after editing: {pinned}")
    path.write_text(new_text, encoding="utf-8")
    ctx.changed_files.add("package.json")
    return passed(
        f"pinned {len(wanted)} packages; {rotation.subject} {previous_spec} → {new_spec}",
        pins=[asdict(pin) for pin in rotation.pins],
        dependency={"field": dependency[0], "previous_spec": previous_spec, "new_spec": new_spec},
    )
