"""Step `confirm-lockfile`: re-read the regenerated lockfile and prove the rotation happened.

The parent resolves at the target; every pinned package has an entry for every configured
platform (npm is known to drop other platforms' optional packages) at its pin, with its
os/cpu/libc fields; each pinned entry's sha512 changed when its version changed (and did not
when it did not) and equals the registry's `dist.integrity`.
"""

from __future__ import annotations

from typing import Any

from bot.errors import VerificationFailed
from bot.manifests.lockfile import LockEntry, Lockfile
from bot.models import StepResult
from bot.sources.npm import PackageVersion
from bot.steps.registry import StepContext, passed, step


def _check_entry(
    entry: LockEntry, manifest: PackageVersion, previous: Lockfile, problems: list[str]
) -> dict[str, Any]:
    name = manifest.name
    before = previous.top_level(name)
    previous_integrity = before.integrity if before else None
    previous_version = before.version if before else None
    if entry.version != manifest.version:
        problems.append(f"{entry.path} is {entry.version}, expected {manifest.version}")
    for field, expected, actual in (
        ("os", manifest.os, entry.os),
        ("cpu", manifest.cpu, entry.cpu),
        ("libc", manifest.libc, entry.libc),
    ):
        if expected and tuple(actual) != tuple(expected):
            problems.append(f"{entry.path} has {field} {list(actual)}, expected {list(expected)}")
    if not (entry.integrity or "").startswith("sha512-"):
        problems.append(f"{entry.path} has no sha512 integrity")
    elif entry.integrity != manifest.dist.integrity:
        problems.append(f"{entry.path} integrity differs from the registry's dist.integrity")
    elif previous_version != manifest.version and entry.integrity == previous_integrity:
        problems.append(f"{entry.path} integrity did not change although the version did")
    elif previous_version == manifest.version and entry.integrity != previous_integrity:
        problems.append(f"{entry.path} integrity changed although {manifest.version} did not")
    return {
        "name": name,
        "path": entry.path,
        "previous_version": previous_version,
        "new_version": entry.version,
        "previous_integrity": previous_integrity,
        "new_integrity": entry.integrity,
        "os": list(entry.os),
        "cpu": list(entry.cpu),
        "libc": list(entry.libc),
    }


@step("confirm-lockfile")
def confirm_lockfile(ctx: StepContext) -> StepResult:
    """Check the regenerated lockfile against the pins and the registry."""
    rotation = ctx.rotation
    lockfile = Lockfile.parse((ctx.worktree / "package-lock.json").read_text(encoding="utf-8"))
    previous = Lockfile.parse(ctx.workspace.read_text("package-lock.json") or "")
    problems: list[str] = []
    entries: list[dict[str, Any]] = []
    wanted = [(rotation.subject, rotation.new_version)] + [
        (pin.name, pin.new_version) for pin in rotation.pins
    ]
    for name, version in wanted:
        manifest = ctx.npm.packument(name).manifest(version)
        found = lockfile.find(name) if name != rotation.subject else ()
        top = lockfile.top_level(name)
        copies = found or ((top,) if top else ())
        if not copies:
            problems.append(
                f"node_modules/{name} is missing from package-lock.json (npm dropped this "
                "platform's optional package)"
            )
            continue
        entries.extend(_check_entry(entry, manifest, previous, problems) for entry in copies)
    if problems:
        raise VerificationFailed(
            f"package-lock.json failed {len(problems)} check(s): {problems[0]}",
            problems=problems,
            entries=entries,
        )
    return passed(
        f"{rotation.subject} {rotation.new_version} and {len(rotation.pins)} pins confirmed "
        "in package-lock.json",
        entries=entries,
    )
