"""The lifecycle at work in a run: what stands between a planned rotation and its pull request.

For each rotation the pipeline asks `ProposalGate.assess` (reads only: the forge's open
proposal, git's view of the branch, the audit trail's approvals and counts) and then
`before_publishing`, which either lets the runbook run (with the lease and the body's lifecycle
lines) or stops it with an outcome:

- `held`: someone else pushed to the branch; one comment on the proposal, nothing overwritten;
- `up-to-date`: the proposal is current (or `rebase-when` says leave it): no write;
- `waiting`: a major awaiting `/rotate approve` (announced in an approval notice), or a new
  proposal over `pull-requests.max-open` / `ROTATION_BOT_MAX_PRS_PER_HOUR` (a rotation that
  fixes a failed verification or a security advisory is never held by limits).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bot.config import NpmFamilySettings, RepoConfig, Settings
from bot.forges.base import Forge, Notice
from bot.lifecycle.policy import BranchFacts, Decision, decide, slot_problem
from bot.lifecycle.records import HOUR, Approval, CommandRecords, Hold
from bot.models import Action, Outcome, Rotation
from bot.publish import Lifecycle, Publication, supersedes_prefix
from bot.runbook import Runbook
from bot.workspace import Workspace

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Assessment:
    """What the gate found for one rotation."""

    facts: BranchFacts
    decision: Decision
    approval: Approval | None = None  # the approval a major needed and has
    waiting: str | None = None  # why it may not open now (approval or slot)
    bypass: str | None = None  # why limits do not hold it


@dataclass(frozen=True)
class Stop:
    """The run ends before the runbook: its outcome, message and the record's evidence."""

    outcome: Outcome
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)


def edited_comment(who: str) -> str:
    """The one comment on a proposal someone else pushed to."""
    return (
        f"This branch was edited by {who}, so rotation-bot will not update it any more. "
        "Say `/rotate recreate` to throw the edits away and regenerate it."
    )


class ProposalGate:
    """Decides, with the forge, git and the audit trail, what happens to each rotation."""

    def __init__(
        self,
        forge: Forge,
        records: CommandRecords | None,
        settings: Settings,
        clock: Callable[[], datetime],
    ) -> None:
        self.forge = forge
        self.records = records
        self.settings = settings
        self.clock = clock

    # --- reading -------------------------------------------------------------------------

    def facts(self, workspace: Workspace, rotation: Rotation) -> BranchFacts:
        """The branch as the forge and git see it (one forge lookup; git for the rest)."""
        repo, branch = workspace.name, rotation.branch
        proposal = self.forge.find_proposal(repo, branch)
        tip = workspace.branch_commit(branch)
        if tip is None:
            return BranchFacts(proposal, None, workspace.base_commit)
        edited_by = None
        foreign = workspace.foreign_commit(branch)
        if foreign is not None:
            login = self.forge.find_commit_author(repo, foreign.sha)
            edited_by = f"@{login}" if login else f"{foreign.author_name} <{foreign.author_email}>"
        behind = proposal is not None and proposal.base_commit != workspace.base_commit
        if behind:
            behind = not workspace.contains_base(branch)
        return BranchFacts(
            proposal,
            tip,
            workspace.base_commit,
            edited_by=edited_by,
            behind=behind,
            conflicted=behind and workspace.conflicts(branch),
        )

    def assess(
        self,
        workspace: Workspace,
        config: RepoConfig,
        runbook: Runbook,
        rotation: Rotation,
        action: Action,
    ) -> Assessment:
        """What would happen to `rotation` now (reads only)."""
        facts = self.facts(workspace, rotation)
        decision = decide(action, rotation, facts, config.pull_requests.rebase_when)
        if decision.verdict not in ("create", "recreate") or facts.proposal is not None:
            return Assessment(facts, decision)
        approval = None
        settings = config.settings_for(runbook.name, NpmFamilySettings)
        if rotation.is_major and settings.major_approval:
            approval = self._approval(workspace.name, runbook.name, rotation.new_version)
            if approval is None:
                return Assessment(
                    facts,
                    decision,
                    waiting=(
                        f"major rotation to {rotation.new_version} waits for approval: a writer "
                        f"says /rotate approve {rotation.new_version}"
                    ),
                )
        problem = self._slot_problem(workspace.name, config, rotation)
        if problem is None:
            return Assessment(facts, decision, approval)
        bypass = self._bypass(workspace.name, runbook, rotation)
        if bypass is None:
            return Assessment(facts, decision, approval, waiting=problem)
        return Assessment(facts, decision, approval, bypass=bypass)

    def _approval(self, repo: str, runbook: str, version: str) -> Approval | None:
        return None if self.records is None else self.records.approval(repo, runbook, version)

    def _slot_problem(self, repo: str, config: RepoConfig, rotation: Rotation) -> str | None:
        max_open = config.pull_requests.max_open
        per_hour = self.settings.max_prs_per_hour
        open_count = 0
        if max_open is not None:
            replaced = supersedes_prefix(rotation)
            open_count = sum(
                1
                for proposal in self.forge.open_proposals(repo)
                if not (replaced and proposal.branch.startswith(replaced))
            )
        opened = 0
        if per_hour is not None and self.records is not None:
            opened = self.records.proposals_opened_since(self.clock() - HOUR)
        return slot_problem(
            open_count=open_count,
            max_open=max_open,
            opened_last_hour=opened,
            max_per_hour=per_hour,
        )

    def _bypass(self, repo: str, runbook: Runbook, rotation: Rotation) -> str | None:
        """Why the limits must not hold this rotation (None: they may)."""
        if self.records is not None and self.records.verification_failed_last(repo, runbook.name):
            return "it replaces a rotation whose verification failed"
        if rotation.kind == "digest" or rotation.previous_version is None:
            return None
        before = self.forge.find_advisories(repo, rotation.subject, rotation.previous_version)
        if not before:
            return None
        after = {
            item.id
            for item in self.forge.find_advisories(repo, rotation.subject, rotation.new_version)
        }
        fixed = [item for item in before if item.id not in after]
        if not fixed:
            return None
        return f"it fixes security advisory {', '.join(item.id for item in fixed)}"

    # --- acting ------------------------------------------------------------------------------

    def before_publishing(
        self,
        workspace: Workspace,
        runbook: Runbook,
        rotation: Rotation,
        assessment: Assessment,
        actor: str,
    ) -> Lifecycle | Stop:
        """Run the runbook (a `Lifecycle` for publishing) or stop here (a `Stop`)."""
        repo, facts, decision = workspace.name, assessment.facts, assessment.decision
        evidence: dict[str, Any] = {
            "branch": rotation.branch,
            "verdict": decision.verdict,
            "reason": decision.reason,
        }
        if decision.verdict == "up-to-date":
            url = facts.proposal.url if facts.proposal else ""
            return Stop("up-to-date", f"{decision.reason}: {url}", {**evidence, "url": url})
        if decision.verdict == "held":
            who = facts.edited_by or "someone"
            commented = self.forge.ensure_comment(
                repo, rotation.branch, f"edited-{rotation.branch}", edited_comment(who)
            )
            return Stop(
                "held",
                f"{rotation.branch} {decision.reason}",
                {**evidence, "edited_by": who, "commit": facts.tip, "commented": commented},
            )
        if assessment.waiting is not None:
            notice = None
            if assessment.waiting.startswith("major"):
                notice = self.forge.ensure_notice(repo, self._approval_notice(runbook, rotation))
            return Stop(
                "waiting",
                assessment.waiting,
                {**evidence, "verdict": "waiting", "reason": assessment.waiting, "notice": notice},
            )
        if decision.verdict == "recreate" and facts.proposal is not None:
            self.forge.close_proposal(
                repo,
                rotation.branch,
                f"Closed to recreate it on request of {actor}; a fresh pull request follows. "
                "— rotation-bot",
            )
        notes = []
        if assessment.approval is not None:
            approval = assessment.approval
            notes.append(
                f"Approved by @{approval.by} on {approval.at[:10]} (/rotate approve "
                f"{approval.version})."
            )
        if assessment.bypass is not None:
            notes.append(f"Opened beyond the pull-request limits: {assessment.bypass}.")
        return Lifecycle(expected_tip=facts.tip, notes=tuple(notes))

    def after_publishing(
        self,
        workspace: Workspace,
        runbook: Runbook,
        rotation: Rotation,
        assessment: Assessment,
        publication: Publication,
    ) -> None:
        """Close the approval notice of a major that was approved and is now proposed."""
        if assessment.approval is None:
            return
        self.forge.close_notice(
            workspace.name,
            self._approval_notice(runbook, rotation),
            f"Approved by @{assessment.approval.by}; proposed in {publication.published.url}.",
        )

    def close_held(
        self, workspace: Workspace, runbook: Runbook, holds: tuple[Hold, ...]
    ) -> list[str]:
        """Close the open proposals of `runbook` whose version someone now holds back."""
        if not holds:
            return []
        closed = []
        prefix = f"rotation-bot/{runbook.name}-"
        for proposal in self.forge.open_proposals(workspace.name):
            if not proposal.branch.startswith(prefix):
                continue
            version = proposal.branch.removeprefix(prefix)
            for hold in holds:
                if version == hold.selector or version.startswith(f"{hold.selector}."):
                    self.forge.close_proposal(
                        workspace.name,
                        proposal.branch,
                        f"Closed: {hold.reason}. Say `/rotate unignore {hold.selector}` to "
                        "have it proposed again. — rotation-bot",
                    )
                    closed.append(proposal.branch)
                    break
        return closed

    def _approval_notice(self, runbook: Runbook, rotation: Rotation) -> Notice:
        version = rotation.new_version
        return Notice(
            kind="approval",
            runbook=runbook.name,
            target=version,
            title=f"rotation-bot: approve the major rotation of {rotation.subject} to {version}?",
            body="\n".join(
                [
                    f"rotation-bot planned a major rotation of `{rotation.subject}` "
                    f"{rotation.previous_version or ''} → {version} "
                    f"(`runbooks.{runbook.name}.major-approval: true`).",
                    "",
                    f"A person with write access says `/rotate approve {version}` (in any issue "
                    "or pull request of this repository) to have its pull request opened, or "
                    f"`/rotate ignore {'.'.join(version.split('.')[:2])}` to hold the line.",
                ]
            ),
        )
