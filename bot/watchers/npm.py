"""The npm watcher: find every project in the repository at the base commit, read its manifests
and lockfile through its package manager, fetch the parent's packument, and let the pure
planner decide."""

from __future__ import annotations

from collections.abc import Mapping
from posixpath import dirname
from typing import Any

from bot.config import NpmFamilySettings
from bot.errors import ConfigError, ManifestError
from bot.managers import MANAGERS
from bot.managers.discovery import discover
from bot.managers.tools import declared_tool
from bot.manifests.package_json import Manifest, PackageJson
from bot.manifests.yaml_document import YamlDocument
from bot.models import Plan, Project, Skipped
from bot.planning.npm_family import FamilyPolicy, ProjectInput, plan_family
from bot.watchers import WatchRequest, watcher
from bot.workspace import Workspace


def family_policy(request: WatchRequest) -> FamilyPolicy:
    """The runbook's pin rule with the repository's settings applied."""
    runbook = request.runbook
    if runbook.pins is None or not runbook.watch.npm:
        raise ConfigError(f"{runbook.source}: an npm runbook needs watch.npm and pins")
    settings = request.repo_config.settings_for(runbook.name, NpmFamilySettings)
    platforms = settings.platforms or runbook.pins.platforms
    if not platforms:
        raise ConfigError(f"{runbook.source}: no platforms configured")
    age = settings.minimum_release_age
    return FamilyPolicy(
        runbook=runbook.name,
        parent=runbook.watch.npm,
        pin_names=runbook.pins.names(tuple(platforms)),
        minimum_release_age=runbook.minimum_release_age if age is None else age,
        major=settings.major_policy,
        add_pins=settings.pin,
        pin_templates=runbook.pins.packages,
        held=request.held,
    )


def _mentions(workspace: Workspace, path: str, name: str) -> bool:
    text = workspace.read_text(path)
    return text is not None and f'"{name}"' in text


def read_project(workspace: Workspace, project: Project) -> ProjectInput:
    """A project's manifests, the file with its overrides and its lockfile at the base commit,
    parsed by its manager."""
    manager = MANAGERS[project.manager]
    # a bad packageManager or rc file fails the plan, before any work
    declared_tool(project, manager)
    manager.check_config(project, lambda name: workspace.read_text(project.path(name)))
    manifests: dict[str, Manifest] = {}
    importers: dict[str, Mapping[str, Any]] = {}
    prefix = f"{project.directory}/" if project.directory else ""
    for path in manager.project_files(project.directory, project.members):
        if not path.endswith("package.json"):
            continue
        text = workspace.read_text(path)
        if text is None:
            raise ManifestError(f"{path} is listed as a workspace but is not in the repository")
        manifest = PackageJson.parse(text, source=path)
        manifests[path] = manifest
        importers[dirname(path.removeprefix(prefix))] = manifest.data
    overrides_path, override_field = manager.pin_location(
        project, lambda name: workspace.read_text(project.path(name))
    )
    for path in (*manager.documents(project), overrides_path):
        text = workspace.read_text(path)
        if path not in manifests and (text is not None or path == overrides_path):
            manifests[path] = YamlDocument.parse(text or "", source=path)
    lock_text = workspace.read_text(project.lockfile)
    if lock_text is None:
        raise ManifestError(f"{project.lockfile} is not in the repository")
    lock = manager.parse_lock(lock_text, source=project.lockfile, manifests=importers)
    return ProjectInput(
        project,
        manifests,
        lock,
        override_field,
        override_manifest=overrides_path,
        override_target=manager.override_target,
        overrides_follow_dependencies=manager.overrides_follow_dependencies,
        install_command=manager.install_command,
        spec_reference=lambda name, spec: tuple(
            (project.path(file), location) for file, location in manager.spec_reference(name, spec)
        ),
    )


@watcher("npm")
def watch_npm(request: WatchRequest) -> Plan:
    """Plan the rotation of one npm package family across every project of one repository."""
    workspace = request.workspace
    policy = family_policy(request)
    found = discover(
        workspace.tracked_files(),
        workspace.read_text,
        directories=request.repo_config.settings_for(
            request.runbook.name, NpmFamilySettings
        ).directories
        or (),
    )
    inputs: list[ProjectInput] = []
    skipped: list[Skipped] = []
    for project in found.projects:
        if project.manager not in MANAGERS:
            if _mentions(workspace, project.path("package.json"), policy.parent):
                skipped.append(
                    Skipped(
                        project.label,
                        f"uses {project.manager} ({project.lockfile}); rotation-bot does not "
                        "rotate that package manager's projects yet",
                    )
                )
            continue
        inputs.append(read_project(workspace, project))
    for directory, reason in found.orphans:
        path = f"{directory}/package.json" if directory else "package.json"
        if _mentions(workspace, path, policy.parent):
            skipped.append(
                Skipped(
                    directory or ".",
                    f"{reason}: commit the lockfile of your package manager there to have "
                    f"{policy.parent} rotated",
                )
            )
    if not inputs:
        reason = (
            "the repository has no Node.js project with a lockfile"
            if not found.projects
            else f"no project rotation-bot can rotate uses {policy.parent}"
        )
        plan = Plan(
            repo=workspace.name,
            runbook=request.runbook.name,
            base_commit=workspace.base_commit,
            current_version=None,
            current_pins=(),
            rotations=(),
            skipped=(*skipped, Skipped(request.runbook.name, reason)),
        )
    else:
        plan = plan_family(
            repo=workspace.name,
            base_commit=workspace.base_commit,
            inputs=inputs,
            parent=request.npm.packument(policy.parent),
            policy=policy,
            now=request.now,
            target=request.target,
            skipped=skipped,
        )
    if request.explicit and not plan.projects:
        # asked for this runbook by name, and no project can be rotated: say why, as an error
        reasons = "; ".join(
            f"{item.subject}: {item.reason}"
            if item.subject != request.runbook.name
            else item.reason
            for item in plan.skipped
        )
        raise ManifestError(f"{workspace.name}: cannot rotate {policy.parent}: {reasons}")
    return plan
