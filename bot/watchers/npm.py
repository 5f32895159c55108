"""The npm watcher: read package.json and the lockfile at the base commit, fetch the parent's
packument, and let the pure planner decide."""

from __future__ import annotations

from bot.errors import ConfigError, ManifestError
from bot.manifests.lockfile import Lockfile
from bot.manifests.package_json import PackageJson
from bot.models import Plan, Skipped
from bot.planning.npm_family import FamilyPolicy, plan_family
from bot.watchers import WatchRequest, watcher


def family_policy(request: WatchRequest) -> FamilyPolicy:
    """The runbook's pin rule with the repository's overrides applied."""
    runbook = request.runbook
    if runbook.pins is None or not runbook.watch.npm:
        raise ConfigError(f"{runbook.source}: an npm runbook needs watch.npm and pins")
    platforms = request.settings.platforms or runbook.pins.platforms
    if not platforms:
        raise ConfigError(f"{runbook.source}: no platforms configured")
    age = request.settings.minimum_release_age
    return FamilyPolicy(
        runbook=runbook.name,
        parent=runbook.watch.npm,
        pin_names=runbook.pins.names(tuple(platforms)),
        minimum_release_age=runbook.minimum_release_age if age is None else age,
        include_major=request.settings.major,
    )


@watcher("npm")
def watch_npm(request: WatchRequest) -> Plan:
    """Plan the rotation of one npm package family in one repository."""
    workspace = request.workspace
    policy = family_policy(request)
    text = workspace.read_text("package.json")
    if text is None:
        if not request.explicit:
            return _not_applicable(request, "the repository has no package.json")
        raise ManifestError(
            f"package.json not found at the root of {workspace.name} ({workspace.base_branch}); "
            "point --repo at a Node.js project"
        )
    package_json = PackageJson.parse(text)
    if package_json.dependency_spec(policy.parent) is None and not request.explicit:
        return _not_applicable(request, f"package.json does not depend on {policy.parent}")
    lock_text = workspace.read_text("package-lock.json")
    if lock_text is None:
        raise ManifestError(
            f"package-lock.json not found in {workspace.name}; run `npm install` and commit it"
        )
    return plan_family(
        repo=workspace.name,
        base_commit=workspace.base_commit,
        package_json=package_json,
        lockfile=Lockfile.parse(lock_text),
        parent=request.npm.packument(policy.parent),
        policy=policy,
        now=request.now,
        target=request.target,
    )


def _not_applicable(request: WatchRequest, reason: str) -> Plan:
    return Plan(
        repo=request.workspace.name,
        runbook=request.runbook.name,
        base_commit=request.workspace.base_commit,
        current_version=None,
        current_pins=(),
        rotations=(),
        skipped=(Skipped(request.runbook.name, reason),),
    )
