"""Step `repin-base-images`: rewrite `FROM image:tag@sha256:…` (or the `ARG` default a `FROM`
uses) to the digests the plan found, then verify by re-reading every edited Dockerfile.

In the base-image runbook the digest changes come with the rotation.  Inside another runbook
(sharp, whose rotation is a package version) the step resolves the digests itself with the
repository's `base-image` settings, and skips with a reason when there is no Dockerfile or no
digest moved.  Only the digest text changes; every other byte of each file stays.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from datetime import timedelta
from pathlib import Path

from bot import paths
from bot.config import BaseImageSettings
from bot.errors import StepFailed
from bot.manifests.dockerfile import BaseImage, Dockerfile
from bot.models import DigestChange, Skipped, StepResult
from bot.runbook import load_runbook, runbooks_dir
from bot.steps.outputs import BaseImagesRepinned
from bot.steps.registry import StepContext, passed, skipped, step
from bot.watchers.base_images import (
    BASE_IMAGE_RUNBOOK,
    digest_policy,
    dockerfile_patterns,
    find_base_images,
    plan_base_images,
)


def _worktree_reader(worktree: Path) -> Callable[[str], str | None]:
    def read(path: str) -> str | None:
        return paths.read_text(worktree, path)

    return read


def _resolve_here(
    ctx: StepContext,
) -> tuple[tuple[DigestChange, ...], tuple[Skipped, ...]] | StepResult:
    """Plan the digests in this worktree (when another runbook includes this step)."""
    settings = ctx.repo_config.settings_for(BASE_IMAGE_RUNBOOK, BaseImageSettings)
    if not settings.enabled:
        return skipped("the base-image runbook is disabled in the repository config")
    path = runbooks_dir(ctx.services.environ) / f"{BASE_IMAGE_RUNBOOK}.yml"
    runbook = load_runbook(path) if path.is_file() else None
    patterns = dockerfile_patterns(settings, runbook.dockerfiles if runbook else ())
    findings = find_base_images(
        ctx.workspace.tracked_files(),
        patterns,
        _worktree_reader(ctx.worktree),
        configured=settings.dockerfiles is not None,
    )
    if not findings.paths:
        return skipped(f"no Dockerfile matches {', '.join(patterns)}")
    plan = plan_base_images(
        repo=ctx.workspace.name,
        base_commit=ctx.workspace.base_commit,
        findings=findings,
        services=ctx.services,
        policy=digest_policy(
            BASE_IMAGE_RUNBOOK, settings, runbook.minimum_release_age if runbook else timedelta(0)
        ),
        now=ctx.services.clock(),
    )
    if not plan.rotations:
        unchecked = f"; {len(plan.skipped)} image(s) not checked" if plan.skipped else ""
        ctx.outputs.base_images = BaseImagesRepinned((), plan.skipped)
        return skipped(f"no base image digest moved{unchecked}", ctx.outputs.base_images)
    return plan.rotations[0].digests, plan.skipped


def _matching(dockerfile: Dockerfile, change: DigestChange, digest: str | None) -> BaseImage:
    for image in dockerfile.images:
        reference = image.reference
        if (
            image.span.line == change.line
            and reference.name == change.image
            and reference.lookup_tag == change.tag
            and reference.digest == digest
        ):
            return image
    raise StepFailed(
        f"{change.file}:{change.line}: expected {change.image}:{change.tag}"
        f"{'@' + digest if digest else ''} there; the Dockerfile changed since planning"
    )


def apply_changes(worktree: Path, changes: Sequence[DigestChange]) -> list[str]:
    """Edit each Dockerfile once for all its changes, then verify by re-reading it."""
    by_file: dict[str, list[DigestChange]] = defaultdict(list)
    for change in changes:
        by_file[change.file].append(change)
    for file, file_changes in sorted(by_file.items()):
        text = paths.read_text(worktree, file)
        if text is None:
            raise StepFailed(f"{file} disappeared from the worktree")
        dockerfile = Dockerfile.parse(text, file)
        edits = [
            (_matching(dockerfile, change, change.previous_digest), change.new_digest)
            for change in file_changes
        ]
        new_text = dockerfile.repin(edits)
        if new_text == text:
            raise StepFailed(f"Expected content to change! {file} is identical after re-pinning")
        paths.write_text(worktree, file, new_text)
        written = Dockerfile.parse(paths.read_text(worktree, file) or "", file)
        for change in file_changes:
            _matching(written, change, change.new_digest)
    return sorted(by_file)


@step("repin-base-images")
def repin_base_images(ctx: StepContext) -> StepResult:
    """Re-pin base-image digests in the worktree's Dockerfiles."""
    if ctx.rotation.kind == "digest":
        changes, left = ctx.rotation.digests, ctx.plan.skipped
        if not changes:
            return skipped("the rotation carries no digest changes")
    else:
        resolved = _resolve_here(ctx)
        if isinstance(resolved, StepResult):
            return resolved
        changes, left = resolved
    files = apply_changes(ctx.worktree, changes)
    ctx.changed_files.update(files)
    count = len(changes)
    ctx.outputs.base_images = BaseImagesRepinned(tuple(changes), tuple(left))
    return passed(
        f"re-pinned {count} base image{'s' if count != 1 else ''} in {', '.join(files)}",
        ctx.outputs.base_images,
    )
