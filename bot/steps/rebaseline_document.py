"""Step `rebaseline-document`: update the repository's pin-table document (configured with
`runbooks.<name>.document`) in the same commit as the pins."""

from __future__ import annotations

from pathlib import PurePosixPath

from bot import paths
from bot.config import NpmFamilySettings
from bot.errors import ConfigError, StepFailed
from bot.manifests.document import RowChange, rebaseline
from bot.models import StepResult
from bot.steps.outputs import DocumentRebaselined
from bot.steps.registry import StepContext, passed, skipped, step


@step("rebaseline-document")
def rebaseline_document(ctx: StepContext) -> StepResult:
    """Rewrite the document's pin table rows; fail when it has none for the pins."""
    relative = ctx.repo_config.settings_for(ctx.runbook.name, NpmFamilySettings).document
    if not relative:
        return skipped("no pin-table document configured (runbooks.<name>.document)")
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts:
        raise ConfigError(
            f".github/rotation-bot.yml: document {relative!r} must be inside the repo"
        )
    text = paths.read_text(ctx.worktree, relative)
    if text is None:
        raise StepFailed(f"{relative} (the configured pin-table document) does not exist")
    rotation = ctx.rotation
    confirmed = ctx.outputs.lockfile
    entries = {entry.name: entry for entry in (confirmed.entries if confirmed else ())}

    def change(name: str, previous: str | None, new: str) -> RowChange:
        entry = entries.get(name)
        return RowChange(
            name,
            previous,
            new,
            entry.previous_integrity if entry else None,
            entry.new_integrity if entry else None,
        )

    changes = [change(rotation.subject, rotation.previous_version, rotation.new_version)] + [
        change(pin.name, pin.previous_version, pin.new_version) for pin in rotation.pins
    ]
    new_text, updated = rebaseline(text, changes)
    if new_text == text:
        raise StepFailed(
            f"Expected {relative} to change: it has no table row with the old pins of "
            f"{', '.join(change.name for change in changes)}"
        )
    paths.write_text(ctx.worktree, relative, new_text)
    ctx.changed_files.add(relative)
    ctx.outputs.document = DocumentRebaselined(relative, tuple(updated))
    return passed(f"re-baselined {len(updated)} row(s) in {relative}", ctx.outputs.document)
