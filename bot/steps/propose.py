"""Step `propose`: commit the worktree, publish the rotation branch, open or update the
proposal on the forge.  It runs last: nothing is committed or published unless every earlier
step passed (or was skipped with a reason)."""

from __future__ import annotations

from bot.errors import StepFailed
from bot.models import StepResult
from bot.publish import build_proposal, supersedes_prefix, title_for
from bot.steps.registry import StepContext, passed, step


@step("propose")
def propose(ctx: StepContext) -> StepResult:
    """Commit, publish the branch, ensure the proposal; supersede older ones."""
    changed = ctx.workspace.changed_files(ctx.worktree)
    unexpected = sorted(set(changed) - ctx.changed_files)
    if unexpected:
        raise StepFailed(
            f"the worktree has changes no step declared: {', '.join(unexpected)}; refusing to "
            "commit them"
        )
    if not changed:
        raise StepFailed("Expected the worktree to change, but no step changed any file")
    rotation = ctx.rotation
    commit = ctx.workspace.commit(
        ctx.worktree,
        f"{title_for(rotation)}\n\nrotation-bot run {ctx.run_id} ({ctx.runbook.name} runbook)",
        changed,
    )
    proposal = build_proposal(
        runbook=ctx.runbook,
        rotation=rotation,
        results=ctx.results,
        run_id=ctx.run_id,
        settings=ctx.repo_config.pull_requests,
        base_branch=ctx.workspace.base_branch,
        base_commit=ctx.workspace.base_commit,
        head_commit=commit,
    )
    ctx.ensure_durable_audit()  # no publish without a durable audit record
    ctx.workspace.publish_branch(rotation.branch, commit)
    published = ctx.services.forge.ensure_proposal(
        ctx.workspace.name, proposal, supersedes_prefix=supersedes_prefix(rotation)
    )
    for branch in published.superseded:
        ctx.workspace.delete_branch(branch)
    ctx.proposal = proposal
    ctx.published = published
    verb = "opened" if published.created else "updated"
    return passed(
        f"{verb} {published.url}",
        branch=rotation.branch,
        commit=commit,
        files=changed,
        url=published.url,
        created=published.created,
        superseded=list(published.superseded),
    )
