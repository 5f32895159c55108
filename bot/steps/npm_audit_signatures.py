"""Step `npm-audit-signatures` (optional): install the rotated tree with `npm ci --ignore-scripts`
in a scratch copy (never the worktree) and run `npm audit signatures`, recording its output.

npm's own check only covers what installs on this machine (a glibc runner skips the musl
binaries) and needs the sigstore TUF service for attestations, so it complements the
`verify-signatures` / `verify-provenance` steps, never replaces them.  It runs only when the
repository enables it (`verify: {npm-audit-signatures: true}`); otherwise it is skipped with
that reason.
"""

from __future__ import annotations

import re
import shutil

from bot.errors import CommandFailed, ServiceUnavailable, VerificationFailed
from bot.managers import get_manager
from bot.models import ProjectRotation, StepResult
from bot.shell import CommandResult, run
from bot.steps.regenerate_lockfile import environment, scratch_copy, tool_for
from bot.steps.registry import StepContext, passed, skipped, step

INSTALL_ARGS = ("ci", "--ignore-scripts", "--no-audit", "--no-fund")
# No retries: a transient failure is reported as unavailable and the next cycle tries again.
AUDIT_ARGS = ("audit", "signatures", "--fetch-retries=0")
_NETWORK_ERROR = re.compile(
    r"npm error code (ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|EPROXY|ENETUNREACH)"
)


def _enabled(ctx: StepContext) -> bool:
    return ctx.repo_config.verify.npm_audit_signatures


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


def _audit(ctx: StepContext, part: ProjectRotation) -> CommandResult:
    """`npm ci --ignore-scripts` then `npm audit signatures` in a scratch copy of one project."""
    project = part.project
    manager = get_manager(project.manager)
    tool = tool_for(ctx, project, manager, ctx.workspace.read_text(project.lockfile) or "")
    tree = scratch_copy(ctx, project, manager)
    manager.prepare(tree, ctx.npm_settings)
    env = environment(ctx, manager, omit_resolved=False)
    try:
        run((*tool.argv, *INSTALL_ARGS), cwd=tree.directory, env=env, timeout=900)
        return run((*tool.argv, *AUDIT_ARGS), cwd=tree.directory, env=env, timeout=300)
    except CommandFailed as error:
        output = str(error.fields.get("stderr", ""))
        network = _NETWORK_ERROR.search(output)
        if network:
            raise ServiceUnavailable(
                f"`npm audit signatures` could not reach its services ({network.group(1)}); "
                "it needs the sigstore TUF repository: allow that, or turn "
                "verify.npm-audit-signatures off",
                output=output,
            ) from error
        raise VerificationFailed(
            f"{project.label}: `npm {' '.join(str(error.fields.get('command', '')).split()[2:4])}` "
            "failed: "
            f"{_last_line(output) or error.message}; do not bypass — keep the known-good pins",
            output=output,
        ) from error
    finally:
        shutil.rmtree(tree.directory, ignore_errors=True)


@step("npm-audit-signatures")
def npm_audit_signatures(ctx: StepContext) -> StepResult:
    """Run `npm audit signatures` on a clean install of each rotated npm project."""
    if not _enabled(ctx):
        return skipped("npm audit signatures: not enabled (set verify.npm-audit-signatures: true)")
    parts = [part for part in ctx.rotation.projects if part.project.manager == "npm"]
    if not parts:
        return skipped("npm audit signatures: no npm project in this rotation")
    lines = []
    for part in parts:
        result = _audit(ctx, part)
        lines.append(f"{part.project.label}: {_last_line(result.stdout) or 'no output'}")
    return passed("npm audit signatures: " + "; ".join(lines))
