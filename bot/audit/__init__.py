"""The audit trail: an append-only, hash-chained record of every run and step.

- `store`: the database (SQLAlchemy; SQLite by default): runs, chained records, proposals;
  durable writes, runs left open by a dead process closed as interrupted.
- `chain`: pure hashing and verification (`ChainCheck`): every displayed column is derived from
  the chain and compared.
- `anchor`: the chain head written after each run where the database's writer cannot rewrite
  it (an append-only file, the log, syslog), and read back by `audit verify --anchor`.
- `owner`: which process owns a run, and whether it is gone.

What the chain proves and what it does not is written down in docs/AUDIT.md.
"""

from bot.audit.anchor import Anchor, AnchorReading, read_anchors
from bot.audit.chain import (
    GENESIS,
    AnchoredHead,
    VerifyReport,
    canonical,
    chain_hash,
)
from bot.audit.owner import ProcessIdentity, current_process
from bot.audit.store import (
    AuditStore,
    chain_head,
    create_table,
    metadata,
    now,
    proposals,
    runs,
    stamp,
    steps,
)

__all__ = [
    "GENESIS",
    "Anchor",
    "AnchorReading",
    "AnchoredHead",
    "AuditStore",
    "ProcessIdentity",
    "VerifyReport",
    "canonical",
    "chain_hash",
    "chain_head",
    "create_table",
    "current_process",
    "metadata",
    "now",
    "proposals",
    "read_anchors",
    "runs",
    "stamp",
    "steps",
]
