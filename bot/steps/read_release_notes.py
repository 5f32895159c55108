"""Step `read-release-notes`: fetch the target's release notes and flag breaking-looking lines.

Notes are evidence for the reviewer, not a gate: when they cannot be read the step is skipped
with the reason and the proposal links the release page."""

from __future__ import annotations

from bot.models import Skipped, StepResult
from bot.sources.releases import release_page
from bot.steps.outputs import ReleaseNotesRead
from bot.steps.registry import StepContext, passed, skipped, step


@step("read-release-notes")
def read_release_notes(ctx: StepContext) -> StepResult:
    """Read the release notes of the rotation's target."""
    spec = ctx.runbook.watch.release_notes
    if not spec:
        return skipped("the runbook names no release-notes source")
    version = ctx.rotation.new_version
    note = ctx.services.releases.find(spec, version)
    if isinstance(note, Skipped):
        ctx.outputs.release_notes = ReleaseNotesRead(url=release_page(spec, version) or "")
        return skipped(note.reason, ctx.outputs.release_notes)
    ctx.outputs.release_notes = ReleaseNotesRead(
        url=note.url, tag=note.tag, body=note.body, breaking_lines=tuple(note.breaking_lines)
    )
    return passed(
        f"read {note.tag} notes; {len(note.breaking_lines)} line(s) look breaking",
        ctx.outputs.release_notes,
    )
