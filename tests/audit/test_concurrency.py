"""Several processes appending at once make one chain — no fork, no lost record — on SQLite and
on a real PostgreSQL; `verify` run meanwhile always sees a consistent snapshot; a writer killed
mid-flight loses nothing it was told was committed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from bot.audit import AuditStore
from tests.support.postgres import Postgres

WRITER = """
import sys
from bot.audit import AuditStore
url, name, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
store = AuditStore(url)
for number in range(runs):
    run_id = store.start_run(repo=f"/srv/{name}", runbook="sharp", trigger="schedule", actor=name)
    for kind in ("plan", "confirm-lockfile", "verify-tarballs"):
        evidence = {"writer": name, "run": number}
        print(store.append(run_id, kind, "passed", evidence, started_at=None), flush=True)
    store.finish_run(run_id, outcome="nothing-to-do", message=f"{name} run {number}")
"""
WRITERS, RUNS = 4, 20


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'audit.sqlite3'}"
    server: Postgres = request.getfixturevalue("postgres")
    return server.create_database(f"chain_{tmp_path.name.lower()}"[:60])


def start_writer(url: str, name: str, runs: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, url, name, str(runs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_concurrent_writers_make_one_chain_that_verifies_throughout(url: str) -> None:
    # the writers also create the schema at the same moment, on an empty database
    writers = [start_writer(url, f"w{number}", RUNS) for number in range(WRITERS)]
    verifier = None
    checks = 0
    while any(writer.poll() is None for writer in writers):
        verifier = verifier or AuditStore(url)
        report = verifier.verify()
        assert report.ok, report.problems  # never a half-written run or a fork
        checks += 1
    outputs = [writer.communicate() for writer in writers]

    assert [writer.returncode for writer in writers] == [0] * WRITERS, outputs
    store = AuditStore(url)
    report = store.verify()
    assert report.ok, report.problems
    assert (report.records, report.runs) == (WRITERS * RUNS * 5, WRITERS * RUNS)
    chained = {record["hash"] for record in store.records()}
    told = {line for stdout, _ in outputs for line in stdout.split()}
    assert len(told) == WRITERS * RUNS * 3 and told <= chained  # no lost record
    assert checks >= 1


def test_a_writer_killed_mid_flight_loses_nothing_it_committed(url: str) -> None:
    AuditStore(url)
    steady = start_writer(url, "steady", RUNS)
    victim = start_writer(url, "victim", 10_000)
    assert victim.stdout is not None
    told = [victim.stdout.readline().strip() for _ in range(25)]  # 25 appends acknowledged
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait(timeout=30)
    rest = victim.stdout.read().split()
    _, steady_err = steady.communicate(timeout=300)

    assert steady.returncode == 0, steady_err
    store = AuditStore(url)
    assert set(told + rest) <= {record["hash"] for record in store.records()}
    assert store.verify().ok
    (open_run,) = [run for run in store.list_runs(limit=1000) if run["outcome"] is None]
    assert store.close_interrupted_runs() == [open_run["id"]]  # its process is gone
    assert store.verify().ok
