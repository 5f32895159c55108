"""Pull-request title, body and checklist, rendered from the rotation and its step evidence.

Pure and deterministic: the same rotation and evidence give the same text byte for byte (no
timings, no timestamps), so updating an open proposal does not churn.  Everything rendered is
passed through `redact`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from bot.config import PullRequestSettings
from bot.errors import redact
from bot.models import Proposal, Rotation, StepResult
from bot.runbook import Runbook
from bot.sources.releases import release_page

MARKER = "<!-- rotation-bot:{runbook}:{version} -->"


def title_for(rotation: Rotation) -> str:
    """The proposal title."""
    if rotation.kind == "digest":
        count = len(rotation.digests)
        return f"Re-pin base-image digests ({count} image{'s' if count != 1 else ''})"
    major = " (major)" if rotation.is_major else ""
    return f"Rotate {rotation.subject} {rotation.previous_version} → {rotation.new_version}{major}"


def _evidence(results: Sequence[StepResult], kind: str) -> Mapping[str, Any]:
    return next((result.evidence for result in results if result.kind == kind), {})


def _cell(value: object) -> str:
    return f"`{value}`" if value else "—"


def _pin_table(rotation: Rotation, results: Sequence[StepResult]) -> list[str]:
    entries = {
        entry["name"]: entry
        for entry in _evidence(results, "confirm-lockfile").get("entries", [])
        if isinstance(entry, dict)
    }
    rows = [(rotation.subject, rotation.previous_version, rotation.new_version)] + [
        (pin.name, pin.previous_version, pin.new_version) for pin in rotation.pins
    ]
    lines = [
        "| Package | Version | Integrity (sha512) |",
        "| --- | --- | --- |",
    ]
    for name, previous, new in rows:
        entry = entries.get(name, {})
        integrity = (
            f"{_cell(entry.get('previous_integrity'))} → {_cell(entry.get('new_integrity'))}"
            if entry
            else "—"
        )
        lines.append(f"| `{name}` | {_cell(previous)} → {_cell(new)} | {integrity} |")
    return lines


def _digest_table(results: Sequence[StepResult]) -> list[str]:
    evidence = _evidence(results, "repin-base-images")
    changes = [change for change in evidence.get("changes", []) if isinstance(change, Mapping)]
    skipped = [item for item in evidence.get("skipped", []) if isinstance(item, Mapping)]
    if not changes and not skipped:
        return []
    lines = ["### Base images", ""]
    if changes:
        lines += ["| File | Image | Digest | Created |", "| --- | --- | --- | --- |"]
    for change in changes:
        created = f"{change.get('previous_created') or '—'} → {change.get('new_created') or '—'}"
        lines.append(
            f"| `{change.get('file')}:{change.get('line')}` | `{change.get('image')}:"
            f"{change.get('tag')}` | {_cell(change.get('previous_digest'))} → "
            f"{_cell(change.get('new_digest'))} | {created} |"
        )
    if skipped:
        lines += ["", "Not re-pinned:", ""]
        lines += [f"- `{item.get('subject')}`: {item.get('reason')}" for item in skipped]
    return [*lines, ""]


def _by_name(results: Sequence[StepResult], kind: str, key: str) -> dict[str, Mapping[str, Any]]:
    return {
        str(item.get("name")): item
        for item in _evidence(results, kind).get(key, [])
        if isinstance(item, Mapping)
    }


def _integrity_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "not checked: `verify-tarballs` did not run"
    if entry.get("matches_registry") and entry.get("matches_lockfile"):
        return "✓ sha512 of the downloaded tarball"
    return "✗ the tarball's sha512 differs"


def _signature_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "not checked: `verify-signatures` did not run"
    status, policy = entry.get("status"), entry.get("policy")
    if status == "verified":
        keys = ", ".join(f"`{keyid}`" for keyid in entry.get("keyids") or [])
        return f"✓ key {keys}"
    if status == "off":
        return f"absent: signature checks are off (policy `{policy}`)"
    return (
        f"absent: {entry.get('registry')} publishes no signing keys, so nothing to verify "
        f"(policy `{policy}`)"
    )


def _provenance_cell(entry: Mapping[str, Any] | None) -> str:
    if entry is None:
        return "not checked: `verify-provenance` did not run"
    status, policy = entry.get("provenance"), entry.get("policy")
    if status == "verified":
        repository = str(entry.get("source_repository") or "").removeprefix("https://github.com/")
        signer = str(entry.get("signer") or "")
        workflow = signer.removeprefix(f"{entry.get('source_repository')}/").partition("@")[0]
        tag = str(entry.get("source_ref") or "").removeprefix("refs/tags/")
        return (
            f"✓ `{repository}`, workflow `{workflow}`, tag `{tag}`, "
            f"Rekor log index {entry.get('log_index')}"
        )
    if status == "off":
        return f"absent: provenance checks are off (policy `{policy}`)"
    return f"absent: this version publishes no provenance attestation (policy `{policy}`)"


def _verification_table(rotation: Rotation, results: Sequence[StepResult]) -> list[str]:
    """Per package: integrity, registry signature, provenance, or why each is absent."""
    if rotation.kind == "digest":
        return []
    tarballs = _by_name(results, "verify-tarballs", "tarballs")
    signatures = _by_name(results, "verify-signatures", "signatures")
    provenance = _by_name(results, "verify-provenance", "provenance")
    lines = [
        "### Verification",
        "",
        "| Package | Integrity | Registry signature | Provenance |",
        "| --- | --- | --- | --- |",
    ]
    for name in [rotation.subject, *(pin.name for pin in rotation.pins)]:
        cells = (
            _integrity_cell(tarballs.get(name)),
            _signature_cell(signatures.get(name)),
            _provenance_cell(provenance.get(name)),
        )
        lines.append(
            f"| `{name}` | " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"
        )
    return [*lines, ""]


def _release_notes(
    runbook: Runbook, rotation: Rotation, results: Sequence[StepResult]
) -> list[str]:
    spec = runbook.watch.release_notes
    if not spec or rotation.kind == "digest":
        return []
    notes = _evidence(results, "read-release-notes")
    url = notes.get("url") or release_page(spec, rotation.new_version)
    lines = ["### Release notes", "", f"- [{rotation.subject} v{rotation.new_version}]({url})"]
    for line in notes.get("breaking_lines", []):
        lines.append(f"- ⚠️ looks breaking: {line}")
    if notes.get("body"):
        lines += ["", "<details><summary>Notes</summary>", "", str(notes["body"]), "", "</details>"]
    return [*lines, ""]


def _risk_signals(results: Sequence[StepResult]) -> list[str]:
    signals = _evidence(results, "assess-risk").get("signals")
    if signals is None:
        return []
    if not signals:
        return ["### Risk signals", "", "None found in the registry metadata.", ""]
    lines = ["### Risk signals", ""]
    for signal in signals:
        lines.append(
            f"- `{signal.get('package')}`: {signal.get('signal')} — {signal.get('detail')}"
        )
    return [*lines, ""]


def _checklist(runbook: Runbook, rotation: Rotation, results: Sequence[StepResult]) -> list[str]:
    if not rotation.is_major:
        return []
    lines = ["### Major rotation checklist", ""]
    lines += [f"- [ ] {item}" for item in runbook.major.checklist]
    sites = _evidence(results, "find-call-sites")
    lines += ["", f"Call sites of `{rotation.subject}` to audit:", ""]
    found = sites.get("call_sites", [])
    lines += [f"- [ ] `{site['file']}:{site['line']}` — `{site['text']}`" for site in found]
    if not found:
        lines.append("- none found in tracked source files")
    breaking = _evidence(results, "read-release-notes").get("breaking_lines", [])
    if breaking:
        lines += ["", "Breaking-change lines from the release notes:", ""]
        lines += [f"- [ ] {line}" for line in breaking]
    return [*lines, ""]


def _steps_table(results: Sequence[StepResult], run_id: str) -> list[str]:
    lines = ["### Runbook steps", "", "| # | Step | Status | Result |", "| --- | --- | --- | --- |"]
    icons = {"passed": "✅ passed", "skipped": "⏭️ skipped", "failed": "❌ failed"}
    for number, result in enumerate(results, start=1):
        summary = result.summary.replace("|", "\\|")
        lines.append(f"| {number} | `{result.kind}` | {icons[result.status]} | {summary} |")
    lines += ["", f"Audit record: `rotation-bot audit show {run_id}`"]
    return lines


def render_body(
    runbook: Runbook, rotation: Rotation, results: Sequence[StepResult], run_id: str
) -> str:
    """The markdown body of the proposal."""
    if rotation.kind == "digest":
        intro = "rotation-bot re-pinned base images to their tags' current digests."
        table: list[str] = []
    else:
        intro = (
            f"rotation-bot rotated `{rotation.subject}` and the pins its "
            f"`optionalDependencies` declare at {rotation.new_version}, following the "
            f"**{runbook.title}** runbook (`{runbook.document or runbook.source}`)."
        )
        table = _pin_table(rotation, results)
    lines = [
        MARKER.format(runbook=runbook.name, version=rotation.new_version),
        f"## {title_for(rotation)}",
        "",
        intro,
        "",
        *table,
        "",
        *_digest_table(results),
        *_verification_table(rotation, results),
        *_release_notes(runbook, rotation, results),
        *_risk_signals(results),
        *_checklist(runbook, rotation, results),
        *_steps_table(results, run_id),
    ]
    return redact("\n".join(lines).replace("\n\n\n", "\n\n") + "\n")


def build_proposal(
    *,
    runbook: Runbook,
    rotation: Rotation,
    results: Sequence[StepResult],
    run_id: str,
    settings: PullRequestSettings,
    base_branch: str,
    base_commit: str,
    head_commit: str,
) -> Proposal:
    """The whole proposal for one rotation."""
    return Proposal(
        branch=rotation.branch,
        title=title_for(rotation),
        body=render_body(runbook, rotation, results, run_id),
        base_branch=base_branch,
        base_commit=base_commit,
        head_commit=head_commit,
        runbook=runbook.name,
        new_version=rotation.new_version,
        run_id=run_id,
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
