"""Step `regenerate-lockfile`: `npm install --package-lock-only`, isolated and script-free.

npm gets an allowlisted environment and a temporary userconfig outside the worktree holding the
registry, its credentials and `ignore-scripts=true`; the user's own npm config is not read.  The
lockfile keeps recording `resolved` URLs exactly when it did before.
"""

from __future__ import annotations

import os

from bot.errors import ManifestError, StepFailed
from bot.manifests.lockfile import Lockfile
from bot.models import StepResult
from bot.shell import allowed_environment, run
from bot.steps.registry import StepContext, passed, step

NPM_ARGV = (
    "npm",
    "install",
    "--package-lock-only",
    "--ignore-scripts",
    "--no-audit",
    "--no-fund",
    "--no-update-notifier",
)


def npm_environment(ctx: StepContext) -> dict[str, str]:
    """The environment every npm command of a run gets (also used by other npm steps)."""
    userconfig = ctx.scratch / "npmrc"
    if not userconfig.exists():
        lock_text = ctx.workspace.read_text("package-lock.json") or "{}"
        try:
            omit = not Lockfile.parse(lock_text).records_resolved
        except ManifestError:
            omit = False
        descriptor = os.open(userconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(ctx.npm_settings.userconfig(omit_resolved=omit))
    cache = ctx.services.settings.state_dir / "npm-cache"
    return allowed_environment(
        ctx.services.environ,
        {
            "NPM_CONFIG_USERCONFIG": str(userconfig),
            "NPM_CONFIG_GLOBALCONFIG": os.devnull,
            "NPM_CONFIG_CACHE": str(cache),
            "NPM_CONFIG_IGNORE_SCRIPTS": "true",
            **dict(ctx.npm_settings.variables),
        },
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
    result = run(NPM_ARGV, cwd=ctx.worktree, env=npm_environment(ctx), timeout=900)
    after = lock_path.read_text(encoding="utf-8")
    if after == before:
        raise StepFailed("Expected package-lock.json to change, but npm left it as it was")
    Lockfile.parse(after)
    ctx.changed_files.add("package-lock.json")
    return passed(
        f"npm regenerated package-lock.json in {result.seconds:.1f}s",
        command=" ".join(NPM_ARGV),
        seconds=result.seconds,
    )
