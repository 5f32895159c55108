"""Step `regenerate-lockfile`: `npm install --package-lock-only`, isolated and script-free.

npm gets an allowlisted environment and a temporary userconfig outside the worktree holding the
registry, its credentials and `ignore-scripts=true`; the user's own npm config is not read.  The
lockfile keeps recording `resolved` URLs exactly when it did before.
"""

from __future__ import annotations

from bot.errors import ManifestError, StepFailed
from bot.manifests.lockfile import Lockfile
from bot.models import StepResult
from bot.shell import run
from bot.sources.npm import LOCKFILE_ONLY_INSTALL, isolated_npm_environment
from bot.steps.registry import StepContext, passed, step


def npm_environment(ctx: StepContext) -> dict[str, str]:
    """The environment every npm command of a run gets (also used by other npm steps)."""
    try:
        omit = not Lockfile.parse(
            ctx.workspace.read_text("package-lock.json") or ""
        ).records_resolved
    except ManifestError:
        omit = False
    return isolated_npm_environment(
        ctx.services.environ,
        ctx.npm_settings,
        userconfig=ctx.scratch / "npmrc",
        cache=ctx.services.settings.state_dir / "npm-cache",
        omit_resolved=omit,
    )


@step("regenerate-lockfile")
def regenerate_lockfile(ctx: StepContext) -> StepResult:
    """Regenerate package-lock.json in the worktree and check that it changed."""
    lock_path = ctx.worktree / "package-lock.json"
    if (ctx.worktree / "node_modules").exists():
        raise StepFailed(
            "node_modules is committed in the repository; npm would reuse it and keep old "
            "versions: remove it from git"
        )
    before = lock_path.read_text(encoding="utf-8")
    result = run(LOCKFILE_ONLY_INSTALL, cwd=ctx.worktree, env=npm_environment(ctx), timeout=900)
    after = lock_path.read_text(encoding="utf-8")
    if after == before:
        raise StepFailed("Expected package-lock.json to change, but npm left it as it was")
    Lockfile.parse(after)
    ctx.changed_files.add("package-lock.json")
    return passed(
        "npm regenerated package-lock.json",  # timings stay in the evidence: bodies must not churn
        command=" ".join(LOCKFILE_ONLY_INSTALL),
        seconds=result.seconds,
    )
