"""Publishing, the pipeline's last stage: the pull-request title, body and checklist rendered
from the rotation and the steps' typed outputs, then commit, branch and proposal.

Rendering is pure and deterministic: the same rotation and outputs give the same text byte for
byte (no timings, no timestamps), so updating an open proposal does not churn.  Every string
that comes from a registry, release notes or the repository is data: it is escaped for Markdown
and HTML (or fenced), `@mentions` are neutralised, and nothing outside the bot can write a
`<!-- … -->` marker.  Everything rendered is passed through `redact`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from bot.config import PullRequestSettings
from bot.errors import StepFailed, redact
from bot.lifecycle.policy import automerge_problem
from bot.markdown import code, code_block, text
from bot.models import (
    ManifestEdit,
    Plan,
    ProjectRotation,
    Proposal,
    PublishedProposal,
    Rotation,
    StepResult,
    describe_duration,
)
from bot.runbook import Runbook
from bot.sources.http import host_of
from bot.sources.releases import release_page
from bot.steps.outputs import ClosureVerified, LockedEntry, Outputs, TarballChecked
from bot.steps.registry import StepContext
from bot.verify.provenance import ProvenanceCheck
from bot.verify.signatures import SignatureCheck

MARKER = "<!-- rotation-bot:{runbook}:{version} -->"
WARNING_LINES = 20


def title_for(rotation: Rotation) -> str:
    """The proposal title."""
    if rotation.kind == "digest":
        count = len(rotation.digests)
        return f"Re-pin base-image digests ({count} image{'s' if count != 1 else ''})"
    major = " (major)" if rotation.is_major else ""
    return f"Rotate {rotation.subject} {rotation.previous_version} → {rotation.new_version}{major}"


def _versions(previous: str | None, new: str | None) -> str:
    return f"{code(previous) if previous else '—'} → {code(new) if new else '—'}"


def _project_table(part: ProjectRotation, rotation: Rotation, outputs: Outputs) -> list[str]:
    entries: dict[str, LockedEntry] = {}
    for entry in outputs.lockfile.entries if outputs.lockfile else ():
        if entry.project == part.project.label:
            entries.setdefault(entry.name, entry)
    rows = [(pin.name, pin.previous_version, pin.new_version) for pin in part.pins]
    if part.installs_parent:
        rows.insert(0, (rotation.subject, part.previous_version, part.new_version))
    lines = ["| Package | Version | Integrity (sha512) |", "| --- | --- | --- |"]
    for name, previous, new in rows:
        found = entries.get(name)
        if found is None:
            integrity = "—"
        elif found.new_integrity is None and found.registry_integrity:
            # the lockfile records no npm integrity (Yarn Berry): say whose hash this is
            integrity = f"registry {code(found.registry_integrity)}"
        else:
            integrity = _versions(found.previous_integrity, found.new_integrity)
        lines.append(f"| {code(name)} | {_versions(previous, new)} | {integrity} |")
    notes = [
        note
        for note in (outputs.lockfile.notes if outputs.lockfile else ())
        if note.startswith(f"{part.project.lockfile} ")
    ]
    for regenerated in outputs.lockfiles.lockfiles if outputs.lockfiles else ():
        if regenerated.lockfile == part.project.lockfile:
            notes += [f"repository code not run: {item}" for item in regenerated.not_run]
            if regenerated.ignored_config:
                notes.append(
                    "repository settings not used: " + ", ".join(regenerated.ignored_config)
                )
    if notes:
        lines += ["", *(f"- {text(note)}" for note in notes)]
    return lines


def _edit_line(edit: ManifestEdit) -> str:
    if len(edit.location) == 1:  # a member of the manifest itself (a whole pin block)
        return f"- {code(edit.manifest)}: added {code(edit.location[0])} {code(edit.new)}"
    where = f"{code(edit.manifest)} {code('.'.join(edit.location[:-1]))}"
    if edit.kind == "key":
        return f"- {where}: key {code(edit.previous)} → {code(edit.new)}"
    if edit.kind == "insert":
        return f"- {where}: added {code(edit.location[-1])} {code(edit.new)}"
    return f"- {where}: {code(edit.location[-1])} {code(edit.previous)} → {code(edit.new)}"


def _pin_block(edits: Sequence[ManifestEdit]) -> str:
    """The JSON members the `suggested` inserts would add, nested as in the file."""
    block: dict[str, Any] = {}
    for edit in edits:
        node = block
        value: Any = json.loads(edit.new) if edit.new.startswith("{") else edit.new
        for key in edit.location[:-1]:
            node = node.setdefault(key, {})
        node[edit.location[-1]] = value
    return json.dumps(block, indent=2)


def _project_section(
    part: ProjectRotation, rotation: Rotation, runbook: Runbook, outputs: Outputs, several: bool
) -> list[str]:
    project = part.project
    lines: list[str] = []
    if several:
        lines += [
            f"#### {code(project.label)} ({project.manager}, {code(project.lockfile)})",
            "",
        ]
    lines += [f"- {text(note)}" for note in part.notes]
    if part.notes:
        lines.append("")
    lines += _project_table(part, rotation, outputs)
    if part.edits:
        lines += ["", "Changed in the manifests:", "", *map(_edit_line, part.edits)]
    if part.unpinned:
        names = ", ".join(code(name) for name in part.unpinned)
        lines += [
            "",
            f"Not pinned: {names}; their lockfile entries were verified above, but a later "
            "install may pick other binaries.",
        ]
        if part.suggested:
            files = ", ".join(sorted({code(edit.manifest) for edit in part.suggested}))
            lines += [
                f"To pin them, add this to {files}, or set "
                f"`runbooks.{runbook.name}.pin: true` and rotation-bot adds it:",
                "",
                *code_block(_pin_block(part.suggested)),
            ]
    for regenerated in outputs.lockfiles.lockfiles if outputs.lockfiles else ():
        if regenerated.project == project.label and regenerated.warnings:
            lines += [
                "",
                f"{text(regenerated.tool)} warned while regenerating {code(regenerated.lockfile)}:",
                "",
                *code_block("\n".join(regenerated.warnings[:WARNING_LINES])),
            ]
    if part.kept:
        lines += ["", f"Copies of {code(rotation.subject)} this rotation leaves alone:", ""]
        lines += [
            f"- {code(copy.key)} stays at {code(copy.version)}: held by {code(copy.holder)} "
            f"({code(copy.spec)})"
            for copy in part.kept
        ]
    return [*lines, ""]


def _integrity_cell(checked: TarballChecked | None) -> str:
    if checked is None:
        return "not checked: `verify-tarballs` did not run"
    if checked.matches_registry and checked.matches_lockfile:
        return "✓ sha512 of the downloaded tarball"
    return "✗ the tarball's sha512 differs"


def _signature_cell(check: SignatureCheck | None) -> str:
    if check is None:
        return "not checked: `verify-signatures` did not run"
    if check.status == "verified":
        return "✓ key " + ", ".join(code(keyid) for keyid in check.keyids)
    if check.status == "off":
        return f"absent: signature checks are off (policy {code(check.policy)})"
    return (
        f"absent: {text(host_of(check.registry))} publishes no signing keys, so nothing to "
        f"verify (policy {code(check.policy)})"
    )


def _provenance_cell(check: ProvenanceCheck | None) -> str:
    if check is None:
        return "not checked: `verify-provenance` did not run"
    if check.status == "verified" and check.facts is not None:
        identity = check.facts.identity
        source = identity.source_repository or ""
        workflow = (identity.subject or "").removeprefix(f"{source}/").partition("@")[0]
        return (
            f"✓ {code(source.removeprefix('https://github.com/'))}, workflow {code(workflow)}, "
            f"tag {code((identity.source_ref or '').removeprefix('refs/tags/'))}, "
            f"Rekor log index {check.facts.log_index}"
        )
    if check.status == "off":
        return f"absent: provenance checks are off (policy {code(check.policy)})"
    return f"absent: this version publishes no provenance attestation (policy {code(check.policy)})"


def _verification_table(rotation: Rotation, outputs: Outputs) -> list[str]:
    """Per package: integrity, registry signature, provenance, or why each is absent."""
    if rotation.kind == "digest":
        return []
    tarballs = {item.name: item for item in outputs.tarballs.tarballs} if outputs.tarballs else {}
    signatures = (
        {item.name: item for item in outputs.signatures.signatures} if outputs.signatures else {}
    )
    provenance = (
        {item.name: item for item in outputs.provenance.provenance} if outputs.provenance else {}
    )
    lines = [
        "### Verification",
        "",
        "| Package | Integrity | Registry signature | Provenance |",
        "| --- | --- | --- | --- |",
    ]
    for name in dict.fromkeys([rotation.subject, *(pin.name for pin in rotation.pins)]):
        cells = (
            _integrity_cell(tarballs.get(name)),
            _signature_cell(signatures.get(name)),
            _provenance_cell(provenance.get(name)),
        )
        lines.append(f"| {code(name)} | " + " | ".join(cells) + " |")
    return [*lines, "", *_closure_lines(outputs.closure), ""]


def _closure_lines(closure: ClosureVerified | None) -> list[str]:
    """Every package whose locked version changes: when it was published, its install scripts,
    and what it was checked against."""
    if closure is None:
        return ["Changed packages in the lockfile: not checked, `verify-closure` did not run."]
    advisories = (
        "no OSV advisory source is configured (`ROTATION_BOT_MALICIOUS_ADVISORIES`), so only "
        "unpublished versions were looked for"
        if closure.advisories is None
        else f"none is in the {closure.advisories} OSV `MAL-` advisories or unpublished"
    )
    age = (
        f"each is older than {text(closure.minimum_age)}"
        if closure.minimum_age != describe_duration(timedelta(0))
        else "no minimum release age applies"
    )
    lines = [
        f"Changed packages in the lockfile ({len(closure.nodes)}): {advisories}; none adds or "
        f"changes an install script the runbook does not allow; {age}.",
        "",
        "| Package | Version | Published | Install scripts (unchanged or allowed) |",
        "| --- | --- | --- | --- |",
    ]
    for node in closure.nodes:
        scripts = ", ".join(
            f"{code(script)}: {code(command)}" for script, command in node.install_scripts
        )
        published = text(node.published_at[:10]) if node.published_at else "—"
        lines.append(
            f"| {code(node.name)} | {_versions(node.previous_version, node.new_version)} "
            f"| {published} | {scripts or '—'} |"
        )
    return lines


def _digest_table(outputs: Outputs) -> list[str]:
    repinned = outputs.base_images
    if repinned is None or (not repinned.changes and not repinned.skipped):
        return []
    lines = ["### Base images", ""]
    if repinned.changes:
        lines += ["| File | Image | Digest | Created |", "| --- | --- | --- | --- |"]
    for change in repinned.changes:
        lines.append(
            f"| {code(f'{change.file}:{change.line}')} | {code(f'{change.image}:{change.tag}')} "
            f"| {_versions(change.previous_digest, change.new_digest)} "
            f"| {text(change.previous_created or '—')} → {text(change.new_created or '—')} |"
        )
    if repinned.skipped:
        lines += ["", "Not re-pinned:", ""]
        lines += [f"- {code(item.subject)}: {text(item.reason)}" for item in repinned.skipped]
    return [*lines, ""]


def _release_notes(runbook: Runbook, rotation: Rotation, outputs: Outputs) -> list[str]:
    spec = runbook.watch.release_notes
    if not spec or rotation.kind == "digest":
        return []
    notes = outputs.release_notes
    url = (notes.url if notes else None) or release_page(spec, rotation.new_version)
    lines = ["### Release notes", "", f"- [{rotation.subject} v{rotation.new_version}]({url})"]
    for line in notes.breaking_lines if notes else ():
        lines.append(f"- ⚠️ looks breaking: {text(line)}")
    if notes and notes.body:
        lines += ["", "<details><summary>Notes</summary>", "", *code_block(notes.body)]
        lines += ["", "</details>"]
    return [*lines, ""]


def _risk_signals(outputs: Outputs) -> list[str]:
    if outputs.risk is None:
        return []
    if not outputs.risk.signals:
        return ["### Risk signals", "", "None found in the registry metadata.", ""]
    lines = ["### Risk signals", ""]
    for signal in outputs.risk.signals:
        lines.append(f"- {code(signal.package)}: {text(signal.signal)} — {code(signal.detail)}")
    return [*lines, ""]


def _not_proposed(plan: Plan | None, rotation: Rotation) -> list[str]:
    if plan is None or rotation.kind == "digest":
        return []
    releases = [item for item in plan.skipped if item.subject.startswith(f"{rotation.subject}@")]
    if not releases:
        return []
    lines = ["### Not proposed", ""]
    lines += [f"- {code(item.subject)}: {text(item.reason)}" for item in releases]
    return [*lines, ""]


def _checklist(runbook: Runbook, rotation: Rotation, outputs: Outputs) -> list[str]:
    if not rotation.is_major:
        return []
    lines = ["### Major rotation checklist", ""]
    lines += [f"- [ ] {item}" for item in runbook.major.checklist]
    lines += ["", f"Call sites of {code(rotation.subject)} to audit:", ""]
    found = outputs.call_sites.call_sites if outputs.call_sites else ()
    lines += [f"- [ ] {code(f'{site.file}:{site.line}')} — {code(site.text)}" for site in found]
    if not found:
        lines.append("- none found in tracked source files")
    breaking = outputs.release_notes.breaking_lines if outputs.release_notes else ()
    if breaking:
        lines += ["", "Breaking-change lines from the release notes:", ""]
        lines += [f"- [ ] {text(line)}" for line in breaking]
    return [*lines, ""]


def _steps_table(results: Sequence[StepResult], run_id: str) -> list[str]:
    lines = ["### Runbook steps", "", "| # | Step | Status | Result |", "| --- | --- | --- | --- |"]
    icons = {"passed": "✅ passed", "skipped": "⏭️ skipped", "failed": "❌ failed"}
    for number, result in enumerate(results, start=1):
        lines.append(
            f"| {number} | `{result.kind}` | {icons[result.status]} | {text(result.summary)} |"
        )
    lines += ["", f"Audit record: `rotation-bot audit show {run_id}`"]
    return lines


def _lifecycle(notes: Sequence[str]) -> list[str]:
    if not notes:
        return []
    return ["### Lifecycle", "", *(f"- {text(note)}" for note in notes), ""]


def render_body(
    runbook: Runbook,
    rotation: Rotation,
    outputs: Outputs,
    results: Sequence[StepResult],
    run_id: str,
    plan: Plan | None = None,
    notes: Sequence[str] = (),
) -> str:
    """The markdown body of the proposal."""
    sections: list[str] = []
    if rotation.kind == "digest":
        intro = "rotation-bot re-pinned base images to their tags' current digests."
    else:
        projects = len(rotation.projects)
        where = f" in {projects} projects" if projects > 1 else ""
        intro = (
            f"rotation-bot rotated {code(rotation.subject)} and the pins its "
            f"`optionalDependencies` declare at {rotation.new_version}{where}, following the "
            f"**{runbook.title}** runbook ({code(runbook.document or runbook.source)})."
        )
        for part in rotation.projects:
            sections += _project_section(part, rotation, runbook, outputs, projects > 1)
    lines = [
        MARKER.format(runbook=runbook.name, version=rotation.new_version),
        f"## {title_for(rotation)}",
        "",
        intro,
        "",
        *sections,
        *_lifecycle(notes),
        *_digest_table(outputs),
        *_verification_table(rotation, outputs),
        *_release_notes(runbook, rotation, outputs),
        *_risk_signals(outputs),
        *_not_proposed(plan, rotation),
        *_checklist(runbook, rotation, outputs),
        *_steps_table(results, run_id),
    ]
    return redact("\n".join(lines).replace("\n\n\n", "\n\n") + "\n")


def build_proposal(
    ctx: StepContext,
    *,
    settings: PullRequestSettings,
    head_commit: str,
    notes: Sequence[str] = (),
) -> Proposal:
    """The whole proposal for one executed rotation (`notes`: the lifecycle's lines)."""
    rotation = ctx.rotation
    return Proposal(
        branch=rotation.branch,
        title=title_for(rotation),
        body=render_body(
            ctx.runbook, rotation, ctx.outputs, ctx.results, ctx.run_id, plan=ctx.plan, notes=notes
        ),
        base_branch=ctx.workspace.base_branch,
        base_commit=ctx.workspace.base_commit,
        head_commit=head_commit,
        runbook=ctx.runbook.name,
        new_version=rotation.new_version,
        run_id=ctx.run_id,
        draft=rotation.is_major and settings.draft_major,
        labels=settings.labels,
        reviewers=settings.reviewers,
        assignees=settings.assignees,
    )


def supersedes_prefix(rotation: Rotation) -> str | None:
    """Branches of older proposals that this one replaces (same runbook and line)."""
    if rotation.kind == "digest":
        return None
    parts = rotation.new_version.split(".")
    line = ".".join(parts[:2]) if parts[0] == "0" else parts[0]
    return f"rotation-bot/{rotation.runbook}-{line}."


@dataclass(frozen=True)
class Lifecycle:
    """What the lifecycle asks of publishing: the commit the branch must still be at (None: it
    must not exist), and lines for the body (approvals, limits)."""

    expected_tip: str | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Publication:
    """What publishing did: the commit, the proposal, where it went, and auto-merge (None: not
    asked; "enabled"; or why not)."""

    commit: str
    files: tuple[str, ...]
    proposal: Proposal
    published: PublishedProposal
    automerge: str | None = None


def automerge_note(ctx: StepContext) -> tuple[bool, str | None]:
    """(ask the forge to auto-merge, the body's line about it) for `pull-requests.automerge`."""
    if not ctx.repo_config.pull_requests.automerge:
        return False, None
    problem = automerge_problem(ctx.rotation, ctx.results, ctx.repo_config.verify)
    if problem is not None:
        return False, f"Auto-merge: not for this rotation ({problem})."
    return True, (
        "Auto-merge: requested; the forge merges this once the required checks pass "
        "(every runbook step and verification passed)."
    )


def publish(ctx: StepContext, lifecycle: Lifecycle = Lifecycle()) -> Publication:
    """Commit exactly the files the steps declared, publish the branch (with a lease: a commit
    someone pushed meanwhile is never overwritten), ensure the proposal, supersede older ones,
    and ask for auto-merge when the config allows it for this rotation.  Runs only after every
    step passed (or skipped with a reason)."""
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
    merge, merge_note = automerge_note(ctx)
    notes = (*lifecycle.notes, *((merge_note,) if merge_note else ()))
    proposal = build_proposal(
        ctx, settings=ctx.repo_config.pull_requests, head_commit=commit, notes=notes
    )
    ctx.ensure_durable_audit()  # no publish without a durable audit record
    ctx.workspace.publish_branch(rotation.branch, commit, expected=lifecycle.expected_tip)
    forge = ctx.services.forge
    published = forge.ensure_proposal(
        ctx.workspace.name, proposal, supersedes_prefix=supersedes_prefix(rotation)
    )
    for branch in published.superseded:
        ctx.workspace.delete_branch(branch)
    automerge = None
    if merge:
        automerge = forge.enable_automerge(ctx.workspace.name, rotation.branch) or "enabled"
    return Publication(commit, tuple(changed), proposal, published, automerge)
