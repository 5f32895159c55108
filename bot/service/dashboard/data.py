"""What the dashboard shows, derived from the audit trail (read-only; no network).

The audit store records runs and their step evidence, not a fleet's state, so the state is
derived here from the records, in chain order:

- current versions and pins: the newest `plan` record of each runbook in a repository;
- base-image digests and their age: the image pins of that plan; a digest's build date is known
  when some plan saw it move (`previous_created` / `new_created`), and "not recorded" otherwise;
- open rotation pull requests: every passed `propose` record opens (or updates) a proposal for
  its branch; one named in a later `superseded` list is closed; one whose version (or digests) a
  later plan finds already on the base branch counts as merged ("merge seen" at that plan);
- pending rotations: targets of the newest plan whose newest run did not end proposed or up to
  date; held lines: the newest plan's skipped releases and images, with their reasons;
- incidents: `incident` records; lead time: release published (when the plan recorded it) →
  pull request opened → merge seen.

Only the runs of the last `window` and the newest runs of each repository and runbook are read in
full, so a page costs the same on a store with years of history.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import semver

from bot.audit import AuditStore, VerifyReport, chain_hash
from bot.models import DIGEST_PATTERN

FAILURE_OUTCOMES = frozenset({"failed", "error", "interrupted"})
DEFAULT_WINDOW = timedelta(days=90)
RECENT_RUNS = 10  # per repository and runbook, read in full whatever their age
_KINDS = ("plan", "propose", "incident")


def parse_time(value: object) -> datetime | None:
    """An ISO 8601 timestamp from the audit trail (naive ones are UTC), or None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _text(value: object) -> str:
    return value if isinstance(value, str) else ""


def _mappings(value: object) -> list[Mapping[str, Any]]:
    return [item for item in value if isinstance(item, Mapping)] if isinstance(value, list) else []


# --- the values the templates render --------------------------------------------------------


@dataclass(frozen=True)
class RunRef:
    """One run as the index records it."""

    id: str
    repo: str
    runbook: str
    trigger: str
    actor: str
    target: str | None
    outcome: str | None
    message: str
    started_at: datetime | None
    finished_at: datetime | None
    proposal_url: str | None

    @property
    def state(self) -> str:
        """`ok`, `failed` or `running` (the outcome's family, for styling and filtering)."""
        if self.outcome is None:
            return "running"
        return "failed" if self.outcome in FAILURE_OUTCOMES else "ok"

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> RunRef:
        """From a `runs` row."""
        return cls(
            id=str(row["id"]),
            repo=str(row["repo"]),
            runbook=str(row["runbook"]),
            trigger=str(row["trigger"]),
            actor=str(row["actor"]),
            target=row.get("target"),
            outcome=row.get("outcome"),
            message=_text(row.get("message")),
            started_at=parse_time(row.get("started_at")),
            finished_at=parse_time(row.get("finished_at")),
            proposal_url=row.get("proposal_url"),
        )


@dataclass(frozen=True)
class PinView:
    """A package pin."""

    name: str
    version: str


@dataclass(frozen=True)
class PackageLine:
    """A runbook's package as the newest plan found it."""

    runbook: str
    current_version: str
    pins: tuple[PinView, ...]
    checked_at: datetime | None


@dataclass(frozen=True)
class ImagePin:
    """A base image pinned by digest, with the digest's build date when some plan recorded it."""

    image: str
    digest: str
    created: datetime | None
    checked_at: datetime | None


@dataclass(frozen=True)
class OpenRotation:
    """A rotation pull request that was open when a run last saw it."""

    runbook: str
    kind: str
    branch: str
    version: str
    url: str
    opened_at: datetime | None
    run_id: str
    digests: frozenset[str] = frozenset()


@dataclass(frozen=True)
class HeldItem:
    """A release or image the newest plan did not rotate, and why."""

    runbook: str
    subject: str
    reason: str


@dataclass(frozen=True)
class PendingRotation:
    """A planned target with nothing published: its newest run failed, or is waiting (for a
    major's approval or a slot)."""

    runbook: str
    version: str
    kind: str
    run_id: str
    outcome: str
    message: str


@dataclass(frozen=True)
class IncidentRef:
    """An incident the bot filed for a failed verification."""

    run_id: str
    runbook: str
    target: str | None
    title: str
    url: str | None
    at: datetime | None


@dataclass(frozen=True)
class LeadTime:
    """One proposal's timeline: release published → pull request opened → merge seen."""

    repo: str
    runbook: str
    version: str
    published_at: datetime | None
    opened_at: datetime
    merged_seen_at: datetime | None


@dataclass(frozen=True)
class RepositoryStatus:
    """Everything the fleet page shows for one repository (and its dashboard issue lists)."""

    repo: str
    packages: tuple[PackageLine, ...]
    images: tuple[ImagePin, ...]
    open_rotations: tuple[OpenRotation, ...]
    pending: tuple[PendingRotation, ...]
    # planned targets whose newest run is `waiting` (a major for `/rotate approve`, or a slot)
    waiting: tuple[PendingRotation, ...]
    held: tuple[HeldItem, ...]
    incidents: tuple[IncidentRef, ...]
    last_run: RunRef
    runs: int

    @property
    def awaiting_approval(self) -> tuple[PendingRotation, ...]:
        """Waiting majors that open only after a writer's `/rotate approve VERSION`."""
        return tuple(item for item in self.waiting if "/rotate approve" in item.message)

    @property
    def waiting_for_slot(self) -> tuple[PendingRotation, ...]:
        """Waiting rotations held by `max-open` or the hourly limit."""
        return tuple(item for item in self.waiting if item not in self.awaiting_approval)

    @property
    def state(self) -> str:
        """The last run's state, or `incident` when the last run filed one."""
        if self.incidents and self.incidents[0].run_id == self.last_run.id:
            return "incident"
        return self.last_run.state


@dataclass(frozen=True)
class Fleet:
    """The fleet page's data."""

    repositories: tuple[RepositoryStatus, ...]
    runs: tuple[RunRef, ...]
    lead_times: tuple[LeadTime, ...]
    window: timedelta
    generated_at: datetime


# --- deriving the fleet --------------------------------------------------------------------


@dataclass
class _Repository:
    """Mutable state while replaying one repository's records."""

    plans: dict[str, tuple[Mapping[str, Any], datetime | None]] = field(default_factory=dict)
    open: dict[tuple[str, str], OpenRotation] = field(default_factory=dict)
    created: dict[str, datetime] = field(default_factory=dict)
    incidents: list[IncidentRef] = field(default_factory=list)
    lead: dict[tuple[str, str], LeadTime] = field(default_factory=dict)


def _version_reached(current: str | None, version: str) -> bool:
    if not current:
        return False
    try:
        return bool(semver.Version.parse(current) >= semver.Version.parse(version))
    except ValueError:
        return current == version


def _rotation_for(plan: Mapping[str, Any], branch: str) -> Mapping[str, Any]:
    return next(
        (item for item in _mappings(plan.get("rotations")) if item.get("branch") == branch), {}
    )


def _pin_digests(plan: Mapping[str, Any]) -> set[str]:
    return {
        _text(pin.get("version"))
        for pin in _mappings(plan.get("current_pins"))
        if DIGEST_PATTERN.match(_text(pin.get("version")))
    }


class _Replay:
    """Replays records in chain order into per-repository state."""

    def __init__(self, runs: Mapping[str, RunRef]) -> None:
        self.runs = runs
        self.repositories: dict[str, _Repository] = defaultdict(_Repository)
        self.run_plans: dict[str, Mapping[str, Any]] = {}

    def feed(self, record: Mapping[str, Any]) -> None:
        run = self.runs.get(str(record["run_id"]))
        if run is None:
            return
        state = self.repositories[run.repo]
        evidence = record["evidence"] if isinstance(record["evidence"], Mapping) else {}
        at = parse_time(record.get("finished_at"))
        if record["kind"] == "plan":
            self._plan(state, run, evidence, at)
        elif record["kind"] == "propose" and record["status"] == "passed":
            self._propose(state, run, evidence, at)
        elif record["kind"] == "incident":
            state.incidents.append(
                IncidentRef(
                    run.id,
                    run.runbook,
                    run.target,
                    _text(evidence.get("title")) or run.message,
                    evidence.get("url") if isinstance(evidence.get("url"), str) else None,
                    at,
                )
            )

    def _plan(
        self,
        state: _Repository,
        run: RunRef,
        plan: Mapping[str, Any],
        at: datetime | None,
    ) -> None:
        self.run_plans[run.id] = plan
        state.plans[run.runbook] = (plan, at)
        for rotation in _mappings(plan.get("rotations")):
            for change in _mappings(rotation.get("digests")):
                for digest_key, created_key in (
                    ("previous_digest", "previous_created"),
                    ("new_digest", "new_created"),
                ):
                    created = parse_time(change.get(created_key))
                    digest = _text(change.get(digest_key))
                    if created and digest:
                        state.created.setdefault(digest, created)
        current = plan.get("current_version")
        digests = _pin_digests(plan)
        for key, proposal in list(state.open.items()):
            if proposal.runbook != run.runbook:
                continue
            merged = (
                proposal.digests <= digests
                if proposal.digests
                else _version_reached(
                    current if isinstance(current, str) else None, proposal.version
                )
            )
            if merged:
                del state.open[key]
                lead = state.lead.get(key)
                if lead is not None and lead.merged_seen_at is None and at is not None:
                    state.lead[key] = LeadTime(
                        lead.repo,
                        lead.runbook,
                        lead.version,
                        lead.published_at,
                        lead.opened_at,
                        at,
                    )

    def _propose(
        self,
        state: _Repository,
        run: RunRef,
        evidence: Mapping[str, Any],
        at: datetime | None,
    ) -> None:
        branch = _text(evidence.get("branch"))
        url = _text(evidence.get("url"))
        if not branch or at is None:
            return
        for gone in evidence.get("superseded") or []:
            state.open.pop((run.runbook, str(gone)), None)
        rotation = _rotation_for(self.run_plans.get(run.id, {}), branch)
        key = (run.runbook, branch)
        previous = state.open.get(key)
        version = _text(rotation.get("new_version")) or run.target or ""
        opened = previous.opened_at if previous and not evidence.get("created") else at
        state.open[key] = OpenRotation(
            runbook=run.runbook,
            kind=_text(rotation.get("kind")) or "patch",
            branch=branch,
            version=version,
            url=url,
            opened_at=opened,
            run_id=run.id,
            digests=frozenset(
                _text(change.get("new_digest")) for change in _mappings(rotation.get("digests"))
            ),
        )
        if evidence.get("created") or key not in state.lead:
            state.lead[key] = LeadTime(
                run.repo,
                run.runbook,
                version,
                parse_time(rotation.get("published_at")),
                opened or at,
                None,
            )


def _relevant(runs: Sequence[RunRef], since: datetime) -> set[str]:
    """Runs inside the window, plus the newest few of each repository and runbook."""
    chosen = {run.id for run in runs if run.started_at is None or run.started_at >= since}
    newest: dict[tuple[str, str], list[str]] = defaultdict(list)
    for run in reversed(runs):
        bucket = newest[(run.repo, run.runbook)]
        if len(bucket) < RECENT_RUNS:
            bucket.append(run.id)
    for ids in newest.values():
        chosen.update(ids)
    return chosen


def _status(repo: str, state: _Repository, runs: Sequence[RunRef]) -> RepositoryStatus:
    packages: list[PackageLine] = []
    images: dict[str, ImagePin] = {}
    held: list[HeldItem] = []
    pending: list[PendingRotation] = []
    waiting: list[PendingRotation] = []
    newest_by_target: dict[tuple[str, str], RunRef] = {}
    for run in runs:
        if run.target:
            newest_by_target[(run.runbook, run.target)] = run
    for runbook, (plan, at) in sorted(state.plans.items()):
        pins = _mappings(plan.get("current_pins"))
        current = plan.get("current_version")
        if isinstance(current, str) and current:
            packages.append(
                PackageLine(
                    runbook,
                    current,
                    tuple(
                        PinView(_text(pin.get("name")), _text(pin.get("version"))) for pin in pins
                    ),
                    at,
                )
            )
        for pin in pins:
            digest = _text(pin.get("version"))
            if DIGEST_PATTERN.match(digest):
                name = _text(pin.get("name"))
                images[f"{name}@{digest}"] = ImagePin(name, digest, state.created.get(digest), at)
        held.extend(
            HeldItem(runbook, _text(item.get("subject")), _text(item.get("reason")))
            for item in _mappings(plan.get("skipped"))
        )
        for rotation in _mappings(plan.get("rotations")):
            version = _text(rotation.get("new_version"))
            newest = newest_by_target.get((runbook, version))
            if newest is None or (
                newest.outcome not in FAILURE_OUTCOMES and newest.outcome != "waiting"
            ):
                continue
            (waiting if newest.outcome == "waiting" else pending).append(
                PendingRotation(
                    runbook,
                    version,
                    _text(rotation.get("kind")),
                    newest.id,
                    str(newest.outcome),
                    newest.message,
                )
            )
    return RepositoryStatus(
        repo=repo,
        packages=tuple(packages),
        images=tuple(images.values()),
        open_rotations=tuple(sorted(state.open.values(), key=lambda item: item.branch)),
        pending=tuple(pending),
        waiting=tuple(waiting),
        held=tuple(held),
        incidents=tuple(reversed(state.incidents)),
        last_run=runs[-1],
        runs=len(runs),
    )


def load_fleet(
    store: AuditStore,
    *,
    now: datetime,
    window: timedelta = DEFAULT_WINDOW,
    repo: str | None = None,
) -> Fleet:
    """The state of every repository the audit trail knows (or of `repo` only), and the runs of
    the window."""
    runs = [
        run for run in map(RunRef.from_row, store.run_index()) if repo is None or run.repo == repo
    ]
    by_id = {run.id: run for run in runs}
    since = now - window
    replay = _Replay(by_id)
    for record in store.records_of(_relevant(runs, since), _KINDS):
        replay.feed(record)
    by_repo: dict[str, list[RunRef]] = defaultdict(list)
    for run in runs:
        by_repo[run.repo].append(run)
    statuses = tuple(
        _status(repo, replay.repositories[repo], repo_runs)
        for repo, repo_runs in sorted(by_repo.items())
    )
    leads = tuple(
        sorted(
            (
                lead
                for state in replay.repositories.values()
                for lead in state.lead.values()
                if lead.opened_at >= since
            ),
            key=lambda lead: lead.opened_at,
        )
    )
    recent = tuple(run for run in runs if run.started_at is not None and run.started_at >= since)
    return Fleet(statuses, recent, leads, window, now)


def repository_status(store: AuditStore, repo: str, *, now: datetime) -> RepositoryStatus | None:
    """One repository's state (for its dashboard issue), or None when it has no runs."""
    found = load_fleet(store, now=now, repo=repo).repositories
    return found[0] if found else None


# --- filtering and sorting (query parameters) ------------------------------------------------

SORTS = ("repo", "last-run", "state", "open", "incidents")
STATES = ("ok", "failed", "incident", "running")


@dataclass(frozen=True)
class FleetQuery:
    """The fleet page's query parameters, validated (anything unknown falls back to a default)."""

    text: str = ""
    state: str = ""
    runbook: str = ""
    sort: str = "repo"
    descending: bool = False

    @classmethod
    def parse(cls, params: Mapping[str, str]) -> FleetQuery:
        """From `?q=&state=&runbook=&sort=&order=`."""
        sort = params.get("sort", "repo")
        state = params.get("state", "")
        return cls(
            text=params.get("q", "").strip()[:200],
            state=state if state in STATES else "",
            runbook=params.get("runbook", "").strip()[:100],
            sort=sort if sort in SORTS else "repo",
            descending=params.get("order") == "desc",
        )

    def apply(self, statuses: Iterable[RepositoryStatus]) -> list[RepositoryStatus]:
        """The matching rows in the chosen order."""
        rows = [
            status
            for status in statuses
            if (not self.text or self.text.lower() in status.repo.lower())
            and (not self.state or status.state == self.state)
            and (
                not self.runbook
                or any(line.runbook == self.runbook for line in status.packages)
                or (self.runbook == "base-image" and status.images)
                or status.last_run.runbook == self.runbook
            )
        ]
        keys = {
            "repo": lambda status: (status.repo.lower(),),
            "last-run": lambda status: (
                status.last_run.started_at or datetime.min.replace(tzinfo=UTC),
            ),
            "state": lambda status: (STATES.index(status.state), status.repo.lower()),
            "open": lambda status: (len(status.open_rotations), status.repo.lower()),
            "incidents": lambda status: (len(status.incidents), status.repo.lower()),
        }
        return sorted(rows, key=keys[self.sort], reverse=self.descending)

    def link(self, **changes: str) -> str:
        """The query string of this view with `changes` (for sort links)."""
        values = {
            "q": self.text,
            "state": self.state,
            "runbook": self.runbook,
            "sort": self.sort,
            "order": "desc" if self.descending else "asc",
            **changes,
        }
        return "?" + urlencode({key: value for key, value in values.items() if value})

    def sort_link(self, column: str) -> str:
        """The link a column header sorts by (a second click reverses the order)."""
        order = "asc" if self.sort != column or self.descending else "desc"
        return self.link(sort=column, order=order)


# --- one run ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StepView:
    """One record of a run: timing, evidence and its place in the hash chain."""

    seq: int
    sequence: int
    kind: str
    status: str
    started_at: datetime | None
    finished_at: datetime | None
    evidence: Mapping[str, Any]
    previous_hash: str
    hash: str
    hash_ok: bool

    @property
    def seconds(self) -> float:
        """How long the step took."""
        if self.started_at is None or self.finished_at is None:
            return 0.0
        return max((self.finished_at - self.started_at).total_seconds(), 0.0)


@dataclass(frozen=True)
class RunView:
    """The run page's data."""

    run: RunRef
    steps: tuple[StepView, ...]
    proposal_title: str | None
    proposal_body: str | None
    chain: VerifyReport

    @property
    def failure(self) -> StepView | None:
        """The step that failed (what stopped the run), if one did."""
        return next(
            (
                step
                for step in self.steps
                if step.status == "failed" and step.kind != "run-finished"
            ),
            None,
        )


def _record_hash_ok(row: Mapping[str, Any], evidence: Mapping[str, Any]) -> bool:
    record = {
        "run_id": row["run_id"],
        "sequence": row["sequence"],
        "kind": row["kind"],
        "status": row["status"],
        "started_at": row["started_at"],
        "finished_at": row["finished_at"],
        "evidence": evidence,
    }
    return chain_hash(str(row["previous_hash"]), record) == str(row["hash"])


def load_run(
    store: AuditStore, run_id: str, *, verify: Callable[[], VerifyReport] | None = None
) -> RunView | None:
    """One run by id or unique prefix, with its records and the chain's `verify` verdict
    (`verify`: where the verdict comes from; by default the whole chain is recomputed)."""
    row = store.find_run(run_id)
    if row is None:
        return None
    steps = []
    for record in store.run_steps(str(row["id"])):
        evidence = record["evidence"]
        steps.append(
            StepView(
                seq=int(record["seq"]),
                sequence=int(record["sequence"]),
                kind=str(record["kind"]),
                status=str(record["status"]),
                started_at=parse_time(record["started_at"]),
                finished_at=parse_time(record["finished_at"]),
                evidence=evidence if isinstance(evidence, Mapping) else {"value": evidence},
                previous_hash=str(record["previous_hash"]),
                hash=str(record["hash"]),
                hash_ok=_record_hash_ok(record, evidence),
            )
        )
    return RunView(
        run=RunRef.from_row(row),
        steps=tuple(steps),
        proposal_title=row.get("proposal_title"),
        proposal_body=row.get("proposal_body"),
        chain=(verify or store.verify)(),
    )


def evidence_json(evidence: Mapping[str, Any]) -> str:
    """Evidence as indented JSON (the raw view under each rendered step)."""
    return json.dumps(evidence, indent=2, sort_keys=True, ensure_ascii=False, default=str)
