"""The no-op fast path: a scheduled check of a repository whose inputs are all as they were at
its last completed no-op check records `unchanged` and skips the fetch, the plan and the audit
writes.

A full scheduled run whose every runbook ended `nothing-to-do` leaves a memo (one row per
repository, in the audit database: SQLite or PostgreSQL) of exactly what its result depended on:

- the bot: its version, every loaded runbook (minus its file path), the operator's npm and
  registry settings and the onboarding switch (`Memos.fingerprint`);
- the repository: the head commit of the default branch (as the bot's repository cache
  follows it), and of the `pull-requests.base` branch when the config names one (the config
  file and every manifest are in that commit; the config file's blob id is kept to say which
  config the memo saw);
- the registries: each packument the plan read (its cache key, so registry and credentials, and
  the SHA-256 of its body) and each base-image tag it resolved (the digest);
- the holds (`/rotate ignore`) in force.

A plan that would change with time alone (a release younger than the minimum age: "a later
cycle picks it up"), one that met an unreachable registry, a repository without a config
(onboarding) or with the dashboard on, and any run that was not plain `nothing-to-do` leave no
memo (and remove the one there was).  The next scheduled check re-reads each packument from
the fleet's shared cache (no request while it is fresh; a stale or missing entry means a full
check, which refreshes it for the fleet), re-resolves each tag, re-reads the holds and asks the
forge for each branch's head (one API request per branch, `GET /repos/…/commits/BRANCH` for
the commit id alone, on condition that it moved: an unmoved branch is a 304, which GitHub does
not count against the rate limit; one for a repository without `pull-requests.base`; no clone,
no fetch): any difference, or a bot upgrade, means a full check.  Only scheduled requests take
the fast path; a person's command always gets a full check.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata as package_metadata
from typing import TYPE_CHECKING, Any

from sqlalchemy import Column, Engine, Float, Integer, MetaData, String, Table, Text, select, update
from sqlalchemy.exc import IntegrityError

from bot.audit.store import create_table
from bot.errors import BotError
from bot.models import LATER_CYCLE, RunSummary

if TYPE_CHECKING:
    from bot.sources.npm.registry import PackumentCache
    from bot.sources.oci.client import OciClient

log = logging.getLogger(__name__)

_metadata = MetaData()
no_op_memos = Table(
    "rotation_bot_no_op_memos",
    _metadata,
    Column("repo", String(255), primary_key=True),  # owner/name, lower case
    Column("fingerprint", String(64), nullable=False),  # bot, runbooks, operator settings
    Column("heads", Text, nullable=False),  # JSON {branch: commit}, the default branch first
    Column("config_blob", String(64)),
    Column("inputs", Text, nullable=False),  # JSON [[kind, key, validator], …]
    Column("holds", String(64), nullable=False),
    Column("runs", Text, nullable=False),  # JSON [[runbook, run id], …] of the full check
    Column("checked_at", Float, nullable=False),  # epoch seconds of the last check
    Column("unchanged", Integer, nullable=False),  # checks answered unchanged since
)


def bot_version() -> str:
    """The installed rotation-bot's version (a new release invalidates every memo)."""
    try:
        return package_metadata.version("rotation-bot")
    except package_metadata.PackageNotFoundError:
        return "unknown"


def digest(text: str) -> str:
    """SHA-256 of `text`, hex."""
    return hashlib.sha256(text.encode()).hexdigest()


def body_digest(body: Any) -> str:
    """The validator of a packument body: SHA-256 of its canonical JSON (the same for the same
    content however it was serialised or fetched)."""
    return digest(json.dumps(body, sort_keys=True, separators=(",", ":")))


# --- what a run read ---------------------------------------------------------------------------


@dataclass
class Inputs:
    """The registry answers one run's plans depended on (collected while `observing`)."""

    read: dict[tuple[str, str], str] = field(default_factory=dict)
    unstable: list[str] = field(default_factory=list)  # why this run's result may not be kept


_current: contextvars.ContextVar[Inputs | None] = contextvars.ContextVar(
    "rotation_bot_inputs", default=None
)


@contextmanager
def observing() -> Iterator[Inputs]:
    """Collect, in this thread, what the registries answered until the block ends."""
    inputs = Inputs()
    token = _current.set(inputs)
    try:
        yield inputs
    finally:
        _current.reset(token)


def observe(kind: str, key: str, validator: str) -> None:
    """A plan read `key` of `kind` (`npm`: a packument cache key; `oci`: registry/path:tag) and
    got the answer `validator` identifies."""
    inputs = _current.get()
    if inputs is not None:
        inputs.read[(kind, key)] = validator


def unstable(reason: str) -> None:
    """A plan met an answer that may differ next time by itself (an unreachable registry)."""
    inputs = _current.get()
    if inputs is not None:
        inputs.unstable.append(reason)


# --- the memo --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Memo:
    """What the last completed no-op check of one repository depended on."""

    repo: str
    fingerprint: str
    heads: Mapping[str, str]
    config_blob: str | None
    inputs: tuple[tuple[str, str, str], ...]
    holds: str
    runs: tuple[tuple[str, str], ...]
    unchanged: int = 0

    @property
    def branches(self) -> tuple[str, ...]:
        """The branches whose heads the memo holds (the default branch first)."""
        return tuple(self.heads)


class Memos:
    """The memo table in the audit database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        create_table(no_op_memos, engine)

    def get(self, repo: str) -> Memo | None:
        """The memo of `repo`, if there is one."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(no_op_memos).where(no_op_memos.c.repo == repo.lower())
            ).first()
        if row is None:
            return None
        return Memo(
            repo=row.repo,
            fingerprint=row.fingerprint,
            heads=json.loads(row.heads),
            config_blob=row.config_blob,
            inputs=tuple((str(k), str(n), str(v)) for k, n, v in json.loads(row.inputs)),
            holds=row.holds,
            runs=tuple((str(r), str(i)) for r, i in json.loads(row.runs)),
            unchanged=row.unchanged,
        )

    def put(self, memo: Memo, now: float) -> None:
        """Keep `memo` as the repository's (replacing the one there was)."""
        values = {
            "fingerprint": memo.fingerprint,
            "heads": json.dumps(dict(memo.heads)),
            "config_blob": memo.config_blob,
            "inputs": json.dumps([list(item) for item in memo.inputs]),
            "holds": memo.holds,
            "runs": json.dumps([list(item) for item in memo.runs]),
            "checked_at": now,
            "unchanged": 0,
        }
        key = no_op_memos.c.repo == memo.repo.lower()
        with self.engine.begin() as connection:
            if connection.execute(update(no_op_memos).where(key).values(values)).rowcount:
                return
        try:
            with self.engine.begin() as connection:
                connection.execute(no_op_memos.insert().values(repo=memo.repo.lower(), **values))
        except IntegrityError:  # another worker kept its memo first: ours is as new
            with self.engine.begin() as connection:
                connection.execute(update(no_op_memos).where(key).values(values))

    def forget(self, repo: str) -> None:
        """Drop `repo`'s memo (its last check was no no-op)."""
        with self.engine.begin() as connection:
            connection.execute(no_op_memos.delete().where(no_op_memos.c.repo == repo.lower()))

    def checked(self, memo: Memo, now: float) -> None:
        """Record one more check answered unchanged (the memo's row, if still the same)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(no_op_memos)
                .where(
                    no_op_memos.c.repo == memo.repo.lower(),
                    no_op_memos.c.heads == json.dumps(dict(memo.heads)),
                )
                .values(checked_at=now, unchanged=no_op_memos.c.unchanged + 1)
            )


def fingerprint(version: str, parts: Sequence[tuple[str, str]]) -> str:
    """The bot-side key of a memo: its version and the (name, text) of everything else that
    shapes a plan (runbooks, operator settings)."""
    return digest(json.dumps([version, sorted(parts)]))


@dataclass(frozen=True)
class NoOpCheck:
    """The fast path of one pipeline: answer `unchanged`, or remember a full no-op check."""

    memos: Memos
    fingerprint: str
    # repo, the memo's {branch: commit} -> each branch's commit now (asked conditionally)
    heads: Callable[[str, Mapping[str, str]], dict[str, str]]
    packuments: PackumentCache | None
    oci: OciClient
    holds: Callable[[str], str]  # repo -> digest of the holds in force
    clock: Callable[[], float] = time.time

    def unchanged(self, repo: str) -> Memo | None:
        """`repo`'s memo when every input it names is as it was (and the check is recorded),
        else None: a full check is due."""
        memo = self.memos.get(repo)
        if memo is None or memo.fingerprint != self.fingerprint:
            return None
        for kind, key, validator in memo.inputs:
            if self._answer(kind, key) != validator:
                return None
        if self.holds(repo) != memo.holds:
            return None
        try:
            if self.heads(repo, memo.heads) != dict(memo.heads):
                return None
        except BotError as error:
            log.info("no fast path", extra={"repo": repo, "error": error.message})
            return None
        self.memos.checked(memo, self.clock())
        return memo

    def _answer(self, kind: str, key: str) -> str | None:
        """What the registry says for one input now (None: unknown without a full check)."""
        if kind == "npm":
            return None if self.packuments is None else self.packuments.current(key)
        if kind == "oci":
            registry, path, tag = json.loads(key)
            try:
                return self.oci.resolve(registry, path, tag).digest
            except BotError:
                return None
        return None

    def remember(
        self,
        repo: str,
        heads: Mapping[str, str] | None,
        config_blob: str | None,
        holds: str,
        summaries: Sequence[RunSummary],
        inputs: Inputs,
    ) -> bool:
        """After a full scheduled check: keep a memo if it was a plain no-op that only new
        inputs can change (see the module docstring), else drop the one there was."""
        if (
            heads is None
            or not summaries
            or inputs.unstable
            or any(s.outcome != "nothing-to-do" or LATER_CYCLE in s.message for s in summaries)
        ):
            self.memos.forget(repo)
            return False
        memo = Memo(
            repo=repo,
            fingerprint=self.fingerprint,
            heads=heads,
            config_blob=config_blob,
            inputs=tuple(sorted((kind, key, value) for (kind, key), value in inputs.read.items())),
            holds=holds,
            runs=tuple((summary.runbook, summary.run_id) for summary in summaries),
        )
        self.memos.put(memo, self.clock())
        return True
