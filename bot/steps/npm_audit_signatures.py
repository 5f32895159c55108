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
from bot.models import StepResult
from bot.shell import run
from bot.steps.regenerate_lockfile import npm_environment
from bot.steps.registry import StepContext, passed, skipped, step

INSTALL_ARGV = ("npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund")
# No retries: a transient failure is reported as unavailable and the next cycle tries again.
AUDIT_ARGV = ("npm", "audit", "signatures", "--fetch-retries=0")
_NETWORK_ERROR = re.compile(
    r"npm error code (ENOTFOUND|ECONNREFUSED|ECONNRESET|ETIMEDOUT|EAI_AGAIN|EPROXY|ENETUNREACH)"
)


def _enabled(ctx: StepContext) -> bool:
    return ctx.repo_config.verify.npm_audit_signatures


def _last_line(text: str) -> str:
    return next((line.strip() for line in reversed(text.splitlines()) if line.strip()), "")


@step("npm-audit-signatures")
def npm_audit_signatures(ctx: StepContext) -> StepResult:
    """Run `npm audit signatures` on a clean install of the rotated lockfile."""
    if not _enabled(ctx):
        return skipped(
            "npm audit signatures: not enabled (set verify.npm-audit-signatures: true)",
            reason="disabled",
        )
    if ctx.rotation.kind == "digest":
        return skipped("no npm packages in this rotation", reason="no npm packages")
    tree = ctx.scratch / "npm-audit-signatures"
    tree.mkdir(exist_ok=True)
    for name in ("package.json", "package-lock.json"):
        source = ctx.worktree / name
        if not source.is_file():
            reason = f"no {name} in the repository"
            return skipped(f"npm audit signatures: {reason}", reason=reason)
        shutil.copyfile(source, tree / name)
    env = npm_environment(ctx)
    install = run(INSTALL_ARGV, cwd=tree, env=env, timeout=900)
    try:
        audit = run(AUDIT_ARGV, cwd=tree, env=env, timeout=300)
    except CommandFailed as error:
        output = str(error.fields.get("stderr", ""))
        network = _NETWORK_ERROR.search(output)
        if network:
            raise ServiceUnavailable(
                f"`npm audit signatures` could not reach its services ({network.group(1)}); "
                "it needs the sigstore TUF repository: allow that, or turn "
                "verify.npm-audit-signatures off",
                command=" ".join(AUDIT_ARGV),
                output=output,
            ) from error
        raise VerificationFailed(
            f"`npm audit signatures` failed: {_last_line(output) or error.message}; do not "
            "bypass — keep the known-good pins",
            command=" ".join(AUDIT_ARGV),
            output=output,
        ) from error
    finally:
        shutil.rmtree(tree, ignore_errors=True)
    return passed(
        f"npm audit signatures: {_last_line(audit.stdout) or 'no output'}",
        command=" ".join(AUDIT_ARGV),
        output=audit.stdout,
        install_seconds=install.seconds,
        seconds=audit.seconds,
    )
