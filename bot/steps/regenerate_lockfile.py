"""Step `regenerate-lockfile`: each project's package manager rewrites its lockfile, isolated.

Nothing from the repository runs.  For each project of the rotation the step copies only the
files its manager needs (manifests, lockfile, workspace file, rc file) from the worktree into a
scratch directory outside it: no `node_modules`, no scripts, no hooks (`.pnpmfile.cjs`, Yarn's
`yarnPath` and plugins), no repository `.npmrc`, no links.  The manager sanitises its config
there (the repository's `.npmrc`, pnpm-workspace.yaml or `.yarnrc.yml` reduced to an allowlist
of keys that shape resolution; what was dropped, and which hooks were not run, is recorded),
gets an allowlisted environment and a 0600 config outside the worktree with the operator's
registries and credentials and scripts off, runs its own tool at the version the repository
declares (`packageManager`) or the bot's pinned default for that lockfile format, and the
lockfile is copied back.
"""

from __future__ import annotations

import os
import re
import shutil

from bot import paths
from bot.errors import CommandFailed, StepFailed
from bot.managers import get_manager
from bot.managers.base import PackageManager, ScratchProject, Tool, ToolPlaces
from bot.managers.tools import declared_tool, ensure_tool
from bot.models import Project, StepResult
from bot.shell import run
from bot.sources.npm.settings import isolated_npm_environment
from bot.steps.outputs import LockfileRegenerated, LockfilesRegenerated
from bot.steps.registry import StepContext, passed, step


def tool_for(ctx: StepContext, project: Project, manager: PackageManager, lock_text: str) -> Tool:
    """The manager's CLI at the version `packageManager` names, or the bot's default for the
    lockfile's format."""
    version, digest = declared_tool(project, manager) or (
        manager.default_tool_version(lock_text),
        None,
    )
    return ensure_tool(
        manager,
        version,
        npm=ctx.npm,
        cache_dir=ctx.services.settings.resolved_tools_dir,
        declared_hash=digest,
        declared_in=project.path("package.json"),
    )


def scratch_copy(ctx: StepContext, project: Project, manager: PackageManager) -> ScratchProject:
    """A fresh scratch directory holding only the project's own files from the worktree."""
    directory = ctx.scratch / "projects" / (project.directory or "_root")
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    prefix = f"{project.directory}/" if project.directory else ""
    for relative in manager.project_files(project.directory, project.members):
        text = paths.read_text(ctx.worktree, relative)
        if text is None:
            continue
        target = directory / relative.removeprefix(prefix)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    return ScratchProject(directory, directory / manager.lockfile, project.directory)


def environment(
    ctx: StepContext, manager: PackageManager, *, omit_resolved: bool
) -> dict[str, str]:
    """The environment a package-manager command of a run gets: npm's isolated one (the
    allowlisted variables, the 0600 userconfig), plus what `manager` needs."""
    state = ctx.services.settings.state_dir
    base = isolated_npm_environment(
        ctx.services.environ,
        ctx.npm_settings,
        userconfig=ctx.scratch / "npmrc",
        cache=state / "npm-cache",
        omit_resolved=omit_resolved,
    )
    return manager.environment(base, ctx.npm_settings, ToolPlaces(ctx.scratch, state))


def hooks_present(ctx: StepContext, project: Project, manager: PackageManager) -> tuple[str, ...]:
    """The manager's hook files the project has (never copied, never run), for the evidence."""
    return tuple(
        f"{project.path(name)} not run"
        for name in manager.hook_files
        if os.path.lexists(ctx.worktree / project.path(name))
    )


_NOISE = ("A complete log of this run", "For a full report see", "/_logs/")
SHOWN_LINES = 12
# Yarn Berry's message codes other than YN0000 (information), e.g. `➤ YN0001: │ Error: …`
_BERRY_CODE = re.compile(r"\bYN(?!0000)\d{4}:")


def tool_messages(output: str, level: str) -> tuple[str, ...]:
    """The package manager's own `level` lines (`npm error code EOVERRIDE`, `npm warn ERESOLVE
    …`; for errors also pnpm's `ERR_PNPM_…`, Yarn 1's `error …` and Yarn Berry's `YN<code>:`
    lines), their indentation collapsed, without blank ones and pointers to its debug log."""
    npm = (f"npm {level}", "npm ERR!" if level == "error" else "npm WARN")
    others = ("ERR_PNPM", "error ") if level == "error" else ()
    lines: list[str] = []
    for raw in output.splitlines():
        line = raw.strip()
        prefix = next((p for p in npm if line.startswith(p)), None)
        if prefix is not None:
            line = f"{prefix} {line[len(prefix) :].strip()}".strip()
            if line == prefix:
                continue
        elif not (line.startswith(others) or (level == "error" and _BERRY_CODE.search(line))):
            continue
        if not any(noise in line for noise in _NOISE):
            lines.append(line)
    return tuple(lines)


def _tool_error(error: CommandFailed) -> str:
    """The manager's own error lines (`npm error code EOVERRIDE; npm error Override for
    sharp@… conflicts with direct dependency`, `ERR_PNPM_…`, `YN0001: …`), not the log path."""
    output = f"{error.fields.get('stderr', '')}\n{error.fields.get('stdout', '')}"
    lines = tool_messages(output, "error")
    shown = "; ".join(lines[:SHOWN_LINES])
    if len(lines) > SHOWN_LINES:
        shown += f"; … ({len(lines) - SHOWN_LINES} more lines in the audit record)"
    return shown or error.message


@step("regenerate-lockfile")
def regenerate_lockfile(ctx: StepContext) -> StepResult:
    """Regenerate every rotated project's lockfile in a scratch copy and bring it back."""
    regenerated: list[LockfileRegenerated] = []
    for part in ctx.rotation.projects:
        project = part.project
        manager = get_manager(project.manager)
        before = paths.read_text(ctx.worktree, project.lockfile)
        if before is None:
            raise StepFailed(f"{project.lockfile} disappeared from the worktree")
        tool = tool_for(ctx, project, manager, before)
        scratch = scratch_copy(ctx, project, manager)
        prepared = manager.prepare(scratch, ctx.npm_settings)
        argv = manager.regenerate_argv(tool)
        omit = not manager.parse_lock(before, source=project.lockfile).records_resolved
        env = environment(ctx, manager, omit_resolved=omit)
        try:
            result = run(argv, cwd=scratch.directory, env=env, timeout=900)
        except CommandFailed as error:
            raise StepFailed(
                f"{tool.name} {tool.version} could not regenerate {project.lockfile}: "
                f"{_tool_error(error)}",
                stderr=error.fields.get("stderr", ""),
            ) from error
        after = scratch.lockfile.read_text(encoding="utf-8")
        if after == before:
            raise StepFailed(
                f"Expected {project.lockfile} to change, but {tool.name} left it as it was"
            )
        manager.parse_lock(after, source=project.lockfile)
        paths.write_text(ctx.worktree, project.lockfile, after)
        ctx.changed_files.add(project.lockfile)
        regenerated.append(
            LockfileRegenerated(
                project=project.label,
                lockfile=project.lockfile,
                manager=manager.name,
                tool=f"{tool.name}@{tool.version}",
                command=" ".join(argv[2:] if argv[0] == "node" else argv),
                ignored_config=prepared.ignored,
                not_run=(*hooks_present(ctx, project, manager), *prepared.notes),
                warnings=tool_messages(result.stderr, "warn"),
            )
        )
    ctx.outputs.lockfiles = LockfilesRegenerated(tuple(regenerated))
    return passed(
        "regenerated " + ", ".join(f"{item.lockfile} ({item.tool})" for item in regenerated),
        ctx.outputs.lockfiles,
    )
