"""What people told the bot, kept in the audit trail, and the audit reads the limits need.

`/rotate ignore 0.35`, `/rotate unignore 0.35` and `/rotate approve 0.35.5` each become one
audited run (trigger `chat`, the commenter as actor, outcome `recorded`) holding one chained
record (`hold` or `approval`) — so they are covered by `audit verify` and shown by `audit list`
like any run.  The holds in force are the ignores not undone by a later unignore, replayed in
chain order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from bot.audit import AuditStore

HOLD = "hold"
APPROVAL = "approval"
HoldAction = Literal["ignore", "unignore"]
_SELECTOR = re.compile(r"^(?:0|[1-9]\d{0,5})(?:\.(?:0|[1-9]\d{0,5})){0,2}$")


def valid_selector(text: str) -> bool:
    """Whether `text` names a line or a version to hold: `0.35`, `2`, `0.35.2`."""
    return bool(_SELECTOR.match(text))


@dataclass(frozen=True)
class Hold:
    """A line or version held back by someone."""

    runbook: str
    selector: str
    by: str
    at: str

    @property
    def reason(self) -> str:
        """How a skipped release names the hold."""
        return f"held by /rotate ignore {self.selector} (@{self.by}, {self.at[:10]})"


@dataclass(frozen=True)
class Approval:
    """A major rotation someone with write access approved."""

    runbook: str
    version: str
    by: str
    at: str


class CommandRecords:
    """The commands of one audit store."""

    def __init__(self, audit: AuditStore) -> None:
        self.audit = audit

    def record_hold(
        self, repo: str, runbook: str, action: HoldAction, selector: str, *, by: str, url: str
    ) -> str:
        """Store an ignore or unignore; returns its run id."""
        return self._record(
            repo,
            runbook,
            HOLD,
            {"action": action, "runbook": runbook, "selector": selector, "by": by},
            target=selector,
            by=by,
            url=url,
            message=f"{action} {runbook} {selector} by @{by}",
        )

    def record_approval(self, repo: str, runbook: str, version: str, *, by: str, url: str) -> str:
        """Store an approval of a major rotation; returns its run id."""
        return self._record(
            repo,
            runbook,
            APPROVAL,
            {"runbook": runbook, "version": version, "by": by},
            target=version,
            by=by,
            url=url,
            message=f"approved {runbook} {version} by @{by}",
        )

    def _record(
        self,
        repo: str,
        runbook: str,
        kind: str,
        evidence: dict[str, str],
        *,
        target: str,
        by: str,
        url: str,
        message: str,
    ) -> str:
        run_id = self.audit.start_run(
            repo=repo, runbook=runbook, trigger="chat", actor=f"{by} ({url})", target=target
        )
        self.audit.append(run_id, kind, "passed", evidence, started_at=None)
        self.audit.finish_run(run_id, outcome="recorded", message=message)
        return run_id

    def holds(self, repo: str, runbook: str | None = None) -> tuple[Hold, ...]:
        """The holds in force in `repo` (of one runbook, or all), oldest first."""
        current: dict[tuple[str, str], Hold] = {}
        for record in self.audit.records_for_repo(repo, {HOLD}):
            evidence = record["evidence"]
            key = (str(evidence.get("runbook")), str(evidence.get("selector")))
            if evidence.get("action") == "ignore":
                current[key] = Hold(key[0], key[1], str(evidence.get("by")), record["finished_at"])
            else:
                current.pop(key, None)
        return tuple(hold for hold in current.values() if runbook in (None, hold.runbook))

    def approval(self, repo: str, runbook: str, version: str) -> Approval | None:
        """The newest approval of `runbook` at `version` in `repo`."""
        found = None
        for record in self.audit.records_for_repo(repo, {APPROVAL}):
            evidence = record["evidence"]
            if (evidence.get("runbook"), evidence.get("version")) == (runbook, version):
                found = Approval(runbook, version, str(evidence.get("by")), record["finished_at"])
        return found

    def proposals_opened_since(self, since: datetime) -> int:
        """How many pull requests the service opened (in any repository) since `since`."""
        return sum(
            1
            for record in self.audit.records_since("propose", since)
            if record["status"] == "passed" and record["evidence"].get("created")
        )

    def verification_failed_last(self, repo: str, runbook: str) -> bool:
        """Whether the newest outcome of `runbook` in `repo` that matters here is a failed
        verification (an incident filed, and no proposal published since)."""
        last = None
        for record in self.audit.records_for_repo(repo, {"incident", "propose"}):
            if record["runbook"] != runbook:
                continue
            if record["kind"] == "incident" or record["status"] == "passed":
                last = record["kind"]
        return last == "incident"


HOUR = timedelta(hours=1)
