"""`/rotate explain` as Markdown: what the plan proposes and what the bot would do with each
rotation (open, regenerate, leave, hold, wait), or why there is nothing to do (the plan's
skips).  Pure: plan and decisions in, text out; every external string is escaped."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bot.lifecycle.records import Hold
from bot.markdown import code, text
from bot.models import Plan, Rotation

VERDICTS = {
    "create": "would open a pull request",
    "regenerate": "would regenerate its pull request",
    "recreate": "would close its pull request and open it afresh",
    "up-to-date": "leaves its pull request as it is",
    "held": "leaves it alone",
    "waiting": "waits",
}


@dataclass(frozen=True)
class Assessed:
    """One rotation and what the bot would do with it now."""

    rotation: Rotation
    verdict: str
    reason: str


def explain(plan: Plan, assessed: Sequence[Assessed], holds: Sequence[Hold]) -> str:
    """Why the bot proposes what it proposes for one runbook, or why nothing."""
    current = plan.current_version or "several versions"
    lines = [f"**{text(plan.runbook)}** (base {code(plan.base_commit[:12])}, now {text(current)})"]
    for item in assessed:
        rotation = item.rotation
        previous = rotation.previous_version or "unpinned"
        lines.append(
            f"- {rotation.kind} {code(rotation.subject)} {text(previous)} → "
            f"{text(rotation.new_version)}: {VERDICTS.get(item.verdict, item.verdict)} "
            f"({text(item.reason)})"
        )
    if not assessed:
        lines.append("- nothing to rotate")
    lines += [f"- not proposed: {code(item.subject)}: {text(item.reason)}" for item in plan.skipped]
    lines += [
        f"- held: {text(hold.selector)} by @\u200b{text(hold.by)} since {text(hold.at[:10])} "
        f"(`/rotate unignore {text(hold.selector)}` lifts it)"
        for hold in holds
    ]
    return "\n".join(lines)
