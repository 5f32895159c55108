"""The hash chain, pure: how a record is hashed, and `ChainCheck`, which walks the records in
chain order and names everything that is wrong.

A record is `{run_id, sequence, kind, status, started_at, finished_at, evidence}`; its hash is
sha256 over the previous record's hash and the record's canonical JSON.  Runs are made of
records: `run-started` (repo, runbook, trigger, actor, target, the owning process), optional
`target-set`, the steps, `proposal` (a local-forge proposal row as written), and `run-finished`
(outcome, message, proposal title, sha256 of the proposal body, proposal URL).  Every column
that the `runs` and `proposals` tables show is therefore derivable from the chain, and
`ChainCheck` compares the tables with what the chain says.  No I/O: the store feeds it rows.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

GENESIS = "0" * 64
Row = Mapping[Any, Any]  # a database row as a mapping (SQLAlchemy's RowMapping, or a dict)

# `runs` columns the chain determines (besides `id`, and `proposal_body`, which it hashes).
RUN_COLUMNS = (
    "repo",
    "runbook",
    "trigger",
    "actor",
    "target",
    "outcome",
    "message",
    "started_at",
    "finished_at",
    "proposal_title",
    "proposal_url",
)
# `proposals` columns a `proposal` record carries (besides `body`, which it hashes).
PROPOSAL_COLUMNS = (
    "repo",
    "branch",
    "runbook",
    "state",
    "title",
    "base_commit",
    "head_commit",
    "new_version",
    "run_id",
    "created_at",
    "updated_at",
    "superseded_by",
)
_DERIVED_FROM = frozenset({"run-started", "target-set", "proposal", "run-finished"})
_STARTED = ("repo", "runbook", "trigger", "actor", "target")
_FINISHED = ("outcome", "message", "proposal_title", "proposal_url")


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def canonical(record: Mapping[str, Any]) -> str:
    """Canonical JSON: sorted keys, no spaces, UTF-8 as is."""
    return _ENCODER.encode(record)


def chain_hash(previous_hash: str, record: Mapping[str, Any]) -> str:
    """sha256 over the previous hash and the canonical JSON of the record."""
    return hashlib.sha256((previous_hash + canonical(record)).encode("utf-8")).hexdigest()


def body_digest(body: str | None) -> str | None:
    """sha256 of a proposal body as stored (None when there is none)."""
    return None if body is None else hashlib.sha256(body.encode("utf-8")).hexdigest()


_SCALARS = ("finished_at", "kind", "run_id", "sequence", "started_at", "status")


def stored_hash(row: Row) -> str:
    """`chain_hash(row["previous_hash"], record)` of a stored row, computed from the stored
    evidence text without decoding it: the store writes evidence as canonical JSON, so the
    record's canonical JSON is that text with the other fields around it in key order.  Any
    change to the text, even one that decodes to the same value, changes the hash."""
    fields = ",".join(f'"{key}":{_ENCODER.encode(row[key])}' for key in _SCALARS)
    text = f'{row["previous_hash"]}{{"evidence":{row["evidence"]},{fields}}}'
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AnchoredHead:
    """A chain head written to an external anchor after a run: record `seq` had `hash`."""

    seq: int
    hash: str
    source: str  # FILE:LINE it was read from


@dataclass(frozen=True)
class VerifyReport:
    """The result of recomputing the chain: counts, and one line per problem found."""

    ok: bool
    records: int
    runs: int
    problems: tuple[str, ...] = ()
    anchored: int = 0  # anchored heads checked
    newest_anchored: int | None = None  # the highest anchored record


@dataclass
class _Run:
    """What the chain says about one run so far."""

    first_seq: int
    started: bool
    values: dict[str, Any] = field(default_factory=dict)
    body_sha256: str | None = None
    records: int = 0
    next_sequence: int = 1
    finished_at_seq: int | None = None
    edited: bool = False  # a record failed its hash: its evidence was not followed


def _where(row: Row) -> str:
    return f"record {row['seq']} (run {str(row['run_id'])[:8]}, {row['kind']})"


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…'"


class ChainCheck:
    """Feed it every record in chain order (`add`), then the head, the `runs` rows and the
    `proposals` rows; `report()` lists every problem, one line each, naming the record or run."""

    def __init__(self, anchors: Sequence[AnchoredHead] = ()) -> None:
        self.problems: list[str] = []
        self.records = 0
        self._anchors = list(anchors)
        self._wanted = {head.seq for head in self._anchors}
        self._hashes: dict[int, str] = {}
        self._previous = GENESIS
        self._next_seq = 1
        self._runs: dict[str, _Run] = {}
        self._proposals: dict[tuple[str, str], dict[str, Any]] = {}
        self._edited_proposals: set[tuple[str, str]] = set()

    # --- records -----------------------------------------------------------------------------

    def add(self, row: Row) -> None:
        """Check one `steps` row (rows must come in `seq` order)."""
        self.records += 1
        seq = int(row["seq"])
        gap = seq > self._next_seq
        if gap:
            missing = f"{self._next_seq}" + (f"-{seq - 1}" if seq - 1 > self._next_seq else "")
            plural = "s" if "-" in missing else ""
            self.problems.append(
                f"record{plural} {missing} {'are' if plural else 'is'} missing (deleted)"
            )
        self._next_seq = seq + 1
        if row["previous_hash"] != self._previous and not gap:
            self.problems.append(f"{_where(row)}: does not link to the record before it")
        self._previous = str(row["hash"])
        if seq in self._wanted:
            self._hashes[seq] = self._previous
        trusted = isinstance(row["evidence"], str) and stored_hash(row) == row["hash"]
        evidence: Any = None
        if not trusted:
            self.problems.append(f"{_where(row)}: contents were edited")
        elif row["kind"] in _DERIVED_FROM:  # only these records shape what the tables show
            evidence = json.loads(row["evidence"])
            if not isinstance(evidence, dict):
                self.problems.append(f"{_where(row)}: evidence is not an object")
                trusted = False
        self._follow_run(row, seq, evidence, trusted=trusted)

    def _follow_run(self, row: Row, seq: int, evidence: Any, *, trusted: bool) -> None:
        """Track the run's sequence and what its records say.  An untrusted (edited) record is
        the problem reported; its run's and proposal's columns are then not compared, so that
        one edit makes one line."""
        run_id, kind = str(row["run_id"]), str(row["kind"])
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = _Run(first_seq=seq, started=kind == "run-started")
            if not run.started:
                self.problems.append(
                    f"run {run_id[:8]}: has no run-started record (its first is record {seq}, "
                    f"{kind})"
                )
            run.values = dict.fromkeys(RUN_COLUMNS)
        elif kind == "run-started":
            self.problems.append(f"{_where(row)}: a second run-started record")
        run.records += 1
        if row["sequence"] != run.next_sequence:
            self.problems.append(
                f"{_where(row)}: sequence {row['sequence']} where {run.next_sequence} was due"
            )
        run.next_sequence = int(row["sequence"]) + 1
        if run.finished_at_seq is not None:
            self.problems.append(
                f"{_where(row)}: comes after the run's run-finished record {run.finished_at_seq}"
            )
        if kind == "proposal":
            self._follow_proposal(row, evidence, trusted=trusted)
        if not trusted:
            run.edited = True
        elif kind == "run-started":
            run.values.update({key: evidence.get(key) for key in _STARTED})
            run.values["started_at"] = row["started_at"]
        elif kind == "target-set":
            run.values["target"] = evidence.get("target")
        elif kind == "run-finished":
            run.values.update({key: evidence.get(key) for key in _FINISHED})
            run.values["finished_at"] = row["finished_at"]
            run.body_sha256 = evidence.get("proposal_body_sha256")
            run.finished_at_seq = seq

    def _follow_proposal(self, row: Row, evidence: Any, *, trusted: bool) -> None:
        key = (evidence.get("repo"), evidence.get("branch")) if isinstance(evidence, dict) else ()
        if len(key) != 2 or not all(isinstance(part, str) for part in key):
            if trusted:
                self.problems.append(f"{_where(row)}: a proposal record without repo and branch")
            return
        name = (str(key[0]), str(key[1]))
        if trusted:
            self._proposals[name] = evidence
        else:
            self._edited_proposals.add(name)

    # --- what the tables and anchors must agree with -------------------------------------------

    @property
    def last_seq(self) -> int:
        """The number of the newest record seen (0 for an empty chain)."""
        return self._next_seq - 1

    def check_head(self, head: Row | None) -> None:
        """The `chain_head` row must name the newest record."""
        if head is None:
            self.problems.append("the chain head row was deleted")
            return
        if head["seq"] == self.last_seq and head["hash"] == self._previous:
            return
        if head["seq"] > self.last_seq:
            self.problems.append(
                f"the chain head names record {head['seq']} but the chain ends at record "
                f"{self.last_seq}: the newest records were removed"
            )
        else:
            self.problems.append(
                f"the chain head (record {head['seq']}, {str(head['hash'])[:12]}) does not match "
                f"the newest record {self.last_seq} ({self._previous[:12]})"
            )

    def check_runs(self, rows: Iterable[Row]) -> None:
        """Every `runs` row must be what its records say; every run in the chain must have one."""
        seen: set[str] = set()
        for row in rows:
            run_id = str(row["id"])
            seen.add(run_id)
            run = self._runs.get(run_id)
            if run is None:
                self.problems.append(f"run {run_id[:8]}: has no run-started record in the chain")
                continue
            if not run.started or run.edited:
                continue  # reported with the record
            for column in RUN_COLUMNS:
                if row[column] != run.values[column]:
                    self.problems.append(
                        f"run {run_id[:8]}: {column} differs from the chain "
                        f"({_short(row[column])} shown, {_short(run.values[column])} chained)"
                    )
            if body_digest(row["proposal_body"]) != run.body_sha256:
                self.problems.append(
                    f"run {run_id[:8]}: proposal_body differs from the chain (its sha256 is not "
                    f"the chained {_short(run.body_sha256)})"
                )
        for run_id, run in self._runs.items():
            if run_id not in seen:
                self.problems.append(
                    f"run {run_id[:8]}: its runs row was deleted (the chain holds {run.records} "
                    f"records of it, from record {run.first_seq})"
                )

    def check_proposals(self, rows: Iterable[Row]) -> None:
        """Every `proposals` row must equal the newest `proposal` record for its repo and branch."""
        seen: set[tuple[str, str]] = set()
        for row in rows:
            key = (str(row["repo"]), str(row["branch"]))
            seen.add(key)
            name = f"proposal {key[0]} {key[1]}"
            if key in self._edited_proposals:
                continue  # reported with the record
            chained = self._proposals.get(key)
            if chained is None:
                self.problems.append(f"{name}: not in the chain")
                continue
            for column in PROPOSAL_COLUMNS:
                if row[column] != chained.get(column):
                    self.problems.append(
                        f"{name}: {column} differs from the chain ({_short(row[column])} shown, "
                        f"{_short(chained.get(column))} chained)"
                    )
            if body_digest(row["body"]) != chained.get("body_sha256"):
                self.problems.append(f"{name}: body differs from the chain (sha256)")
        for key in self._proposals:
            if key not in seen and key not in self._edited_proposals:
                self.problems.append(f"proposal {key[0]} {key[1]}: its row was deleted")

    def check_anchors(self) -> None:
        """Every anchored head must still be in the chain, with the anchored hash."""
        for head in self._anchors:
            actual = self._hashes.get(head.seq)
            if head.seq > self.last_seq:
                self.problems.append(
                    f"anchor {head.source}: record {head.seq} is not in the chain, which ends at "
                    f"record {self.last_seq}: records were removed or the database was replaced"
                )
            elif actual is None:
                self.problems.append(f"anchor {head.source}: record {head.seq} is missing")
            elif actual != head.hash:
                self.problems.append(
                    f"anchor {head.source}: record {head.seq} hashes to {actual[:12]}… but was "
                    f"anchored as {head.hash[:12]}…: the chain was rewritten"
                )

    def report(self) -> VerifyReport:
        """Everything found so far."""
        return VerifyReport(
            ok=not self.problems,
            records=self.records,
            runs=len(self._runs),
            problems=tuple(self.problems),
            anchored=len(self._anchors),
            newest_anchored=max((head.seq for head in self._anchors), default=None),
        )
