"""Pure lifecycle decisions: no I/O, facts in, a decision with its reason out."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from bot.config import RebaseWhen, VerifySettings
from bot.forges.base import ExistingProposal
from bot.models import Action, Rotation, StepResult

Verdict = Literal["create", "regenerate", "recreate", "up-to-date", "held"]
# verification steps → the `verify:` policy that says whether they may be skipped (a step
# without one, and a policy left to the registry's default, count as required)
VERIFICATIONS: dict[str, Callable[[VerifySettings], str | None]] = {
    "confirm-lockfile": lambda verify: "required",
    "verify-tarballs": lambda verify: "required",
    "verify-signatures": lambda verify: verify.signatures,
    "verify-provenance": lambda verify: verify.provenance,
    "npm-audit-signatures": lambda verify: "required" if verify.npm_audit_signatures else "off",
}


@dataclass(frozen=True)
class BranchFacts:
    """What the forge and git say about a rotation's branch right now."""

    proposal: ExistingProposal | None  # its open proposal on the forge
    tip: str | None  # the branch's commit (None: no such branch)
    base_commit: str  # the base the rotation would be made on now
    edited_by: str | None = None  # who pushed a commit the bot did not make (None: nobody)
    behind: bool = False  # the base has commits the branch lacks
    conflicted: bool = False  # merging the branch into the base conflicts


@dataclass(frozen=True)
class Decision:
    """What to do with one planned rotation, and why (the reason is shown to people)."""

    verdict: Verdict
    reason: str


def decide(
    action: Action, rotation: Rotation, facts: BranchFacts, rebase_when: RebaseWhen
) -> Decision:
    """Whether to (re)generate the rotation, leave its proposal as it is, or hold it.

    Someone else's commit on the branch always wins (held), except for `/rotate recreate`, whose
    point is to start afresh.  An open, current proposal costs no write: it is regenerated only
    when it is for another version, when the branch is no longer the bot's last commit, or when
    the base moved and `rebase-when` (or `/rotate rebase`) asks for it."""
    proposal = facts.proposal
    if action == "recreate":
        return Decision("recreate", "recreate requested: closing and opening afresh")
    if facts.edited_by is not None:
        return Decision(
            "held",
            f"edited by {facts.edited_by}; the bot leaves the branch alone "
            "(say /rotate recreate to regenerate it)",
        )
    if proposal is None:
        return Decision("create", "no open proposal for this rotation")
    if proposal.new_version != rotation.new_version or not proposal.base_commit:
        return Decision("regenerate", "the open proposal is for another version")
    if facts.tip is None or facts.tip != proposal.head_commit:
        return Decision("regenerate", "the branch is not the proposal's head")
    if proposal.base_commit == facts.base_commit:
        if action == "rebase":
            return Decision("up-to-date", "already made on the current base")
        return Decision("up-to-date", "already proposed and up to date")
    if action == "rebase":
        return Decision("regenerate", "rebase requested: regenerating on the current base")
    if rebase_when == "never":
        return Decision("up-to-date", "the base moved; left as it is (rebase-when: never)")
    if rebase_when == "conflicted" and not facts.conflicted:
        return Decision("up-to-date", "the base moved without conflicts (rebase-when: conflicted)")
    why = "it conflicts with the base" if facts.conflicted else "the base moved"
    return Decision("regenerate", f"{why}: regenerating on the current base")


def slot_problem(
    *,
    open_count: int,
    max_open: int | None,
    opened_last_hour: int,
    max_per_hour: int | None,
) -> str | None:
    """Why a new proposal must wait for a slot (None: it may open now)."""
    if max_open is not None and open_count >= max_open:
        return (
            f"waiting for a slot: {open_count} rotation pull requests are open "
            f"(pull-requests.max-open: {max_open})"
        )
    if max_per_hour is not None and opened_last_hour >= max_per_hour:
        return (
            f"waiting for a slot: the service opened {opened_last_hour} pull requests in the "
            f"last hour (ROTATION_BOT_MAX_PRS_PER_HOUR={max_per_hour})"
        )
    return None


def automerge_problem(
    rotation: Rotation, results: Sequence[StepResult], verify: VerifySettings
) -> str | None:
    """Why this rotation must not be merged automatically (None: it may): only patch rotations,
    every step passed or skipped, and no verification skipped where it is required."""
    if rotation.kind != "patch":
        return f"auto-merge is for patch rotations only (this one is {rotation.kind})"
    for result in results:
        if result.status == "failed":
            return f"step {result.kind} failed"
        if (
            result.status == "skipped"
            and result.kind in VERIFICATIONS
            and VERIFICATIONS[result.kind](verify) in ("required", None)
        ):
            return f"verification {result.kind} was skipped but is required"
    return None
