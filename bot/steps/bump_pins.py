"""Step `bump-pins`: apply the plan's manifest edits in every project of the rotation.

The plan computed each edit exactly (the parent's declarations and overrides, every pin where
it lives — package.json, or pnpm-workspace.yaml for pnpm's workspace overrides —, `allowScripts`
entries naming the old version); this step checks each old value is still where the plan saw
it, writes the files (never through a link) and verifies by re-reading them that every new
value is there.
"""

from __future__ import annotations

from collections import defaultdict

from bot import paths
from bot.errors import ManifestError, StepFailed
from bot.manifests.package_json import apply_edits
from bot.manifests.yaml_document import apply_yaml_edits
from bot.models import ManifestEdit, StepResult
from bot.steps.outputs import AppliedEdit, PinsBumped
from bot.steps.registry import StepContext, passed, step


@step("bump-pins")
def bump_pins(ctx: StepContext) -> StepResult:
    """Rewrite the manifests in the worktree; verify by re-reading them."""
    by_file: dict[str, list[ManifestEdit]] = defaultdict(list)
    for part in ctx.rotation.projects:
        for edit in part.edits:
            by_file[edit.manifest].append(edit)
    if not by_file:
        raise StepFailed("Expected the rotation to edit a manifest, but the plan holds no edit")
    for manifest, edits in sorted(by_file.items()):
        text = paths.read_text(ctx.worktree, manifest)
        if text is None:
            raise StepFailed(f"{manifest} disappeared from the worktree")
        edit_file = apply_yaml_edits if manifest.endswith((".yaml", ".yml")) else apply_edits
        try:
            new_text = edit_file(text, edits, source=manifest)
        except ManifestError as error:
            raise StepFailed(f"{error.message}; the manifest changed since planning") from error
        if new_text == text:
            raise StepFailed(f"Expected {manifest} to change, but the edits left it as it was")
        paths.write_text(ctx.worktree, manifest, new_text)
        ctx.changed_files.add(manifest)
    ctx.outputs.pins = PinsBumped(
        edits=tuple(
            AppliedEdit(edit.manifest, ".".join(edit.location), edit.kind, edit.previous, edit.new)
            for edits in by_file.values()
            for edit in edits
        ),
        files=tuple(sorted(by_file)),
    )
    count = sum(len(edits) for edits in by_file.values())
    return passed(
        f"{count} edit(s) in {', '.join(sorted(by_file))}: {ctx.rotation.subject} → "
        f"{ctx.rotation.new_version} with its pins",
        ctx.outputs.pins,
    )
