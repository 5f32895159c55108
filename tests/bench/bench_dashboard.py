"""Benchmark (not a test): how long the dashboard takes to answer, for a fleet of a given size.

    .venv/bin/python tests/bench/bench_dashboard.py [--repos 40] [--runs 25] [--repeat 20]

Writes a synthetic audit trail through `AuditStore`'s API (each run: run-started, a plan with four
pins and a held release, eight evidence-carrying steps, propose, run-finished; every fifth run a
failed verification with an incident), then asks the real WSGI app (through httpx's WSGI
transport, so no socket time is counted) for the fleet page, a filtered fleet page and a run page
(whose `verify` verdict is computed over the whole chain on the first request and reused while
the chain is unchanged), and prints the first request's time and p50/p95 per page.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import httpx

from bot.audit import AuditStore
from bot.service.dashboard.auth import DashboardAuth
from bot.service.dashboard.web import DashboardApp

TOKEN = "benchmark-dashboard-token-0123456789"
PINS = [
    {"name": f"@img/sharp-{kind}{platform}", "version": "0.33.5" if not kind else "1.0.4"}
    for platform in ("linux-x64", "linuxmusl-x64")
    for kind in ("", "libvips-")
]
INTEGRITY = "sha512-" + "A" * 86 + "=="


def write_fleet(store: AuditStore, repos: int, runs: int) -> str:
    """Fill the store; returns the id of one run to open."""
    last = ""
    for repo_index in range(repos):
        repo = f"octo/service-{repo_index:03d}"
        for run_index in range(runs):
            version = f"0.33.{6 + run_index}"
            failing = run_index % 5 == 4
            run_id = store.start_run(
                repo=repo, runbook="sharp", trigger="schedule", actor="cron", target=version
            )
            store.append(
                run_id,
                "plan",
                "passed",
                {
                    "current_version": f"0.33.{5 + run_index}",
                    "current_pins": PINS,
                    "rotations": [
                        {
                            "kind": "patch",
                            "subject": "sharp",
                            "new_version": version,
                            "branch": f"rotation-bot/sharp-{version}",
                            "published_at": "2024-05-01T06:00:00+00:00",
                            "pins": PINS,
                            "digests": [],
                        }
                    ],
                    "skipped": [{"subject": "sharp@0.34.0-rc.1", "reason": "prerelease"}],
                },
                started_at=None,
            )
            for kind in (
                "read-release-notes",
                "bump-overrides",
                "regenerate-lockfile",
                "confirm-lockfile",
                "verify-tarballs",
                "verify-signatures",
                "verify-provenance",
                "assess-risk",
            ):
                entries = [{**pin, "new_integrity": INTEGRITY, "os": ["linux"]} for pin in PINS]
                store.append(run_id, kind, "passed", {"entries": entries}, started_at=None)
            if failing:
                store.append(
                    run_id,
                    "verify-signatures",
                    "failed",
                    {"error": "verification", "message": "signature invalid", "problems": ["x"]},
                    started_at=None,
                )
                store.append(run_id, "incident", "passed", {"title": "failed"}, started_at=None)
                store.finish_run(run_id, outcome="failed", message="step failed")
            else:
                store.append(
                    run_id,
                    "propose",
                    "passed",
                    {
                        "branch": f"rotation-bot/sharp-{version}",
                        "url": f"https://github.com/{repo}/pull/{run_index + 1}",
                        "created": True,
                        "superseded": [f"rotation-bot/sharp-0.33.{5 + run_index}"],
                    },
                    started_at=None,
                )
                store.finish_run(run_id, outcome="proposed", message="proposed")
            last = run_id
    return last


def timed(client: httpx.Client, path: str, repeat: int) -> tuple[float, float, float, int]:
    """(first ms, p50 ms, p95 ms, bytes) of GET `path` (the first pays for any cold cache)."""
    samples = []
    size = 0
    for _ in range(repeat):
        started = time.perf_counter()
        answer = client.get(path)
        samples.append((time.perf_counter() - started) * 1000)
        if answer.status_code != 200:
            raise SystemExit(f"GET {path} answered {answer.status_code}")
        size = len(answer.content)
    first = samples[0]
    samples.sort()
    return first, statistics.median(samples), samples[int(len(samples) * 0.95) - 1], size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repos", type=int, default=40)
    parser.add_argument("--runs", type=int, default=25)
    parser.add_argument("--repeat", type=int, default=20)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        store = AuditStore(f"sqlite:///{Path(directory) / 'audit.sqlite3'}")
        started = time.perf_counter()
        run_id = write_fleet(store, arguments.repos, arguments.runs)
        records = sum(1 for _ in store.records())
        print(
            f"fleet: {arguments.repos} repositories x {arguments.runs} runs = {records} records "
            f"(written in {time.perf_counter() - started:.1f} s)"
        )
        app = DashboardApp(audit=store, auth=DashboardAuth(token=TOKEN), runbooks=["sharp"])
        with httpx.Client(
            transport=httpx.WSGITransport(app=app),
            base_url="http://dashboard.test",
            headers={"Authorization": f"Bearer {TOKEN}"},
        ) as client:
            for label, path in (
                ("fleet page", "/dashboard"),
                ("fleet, filtered+sorted", "/dashboard?q=service-01&sort=last-run&order=desc"),
                ("run page (+ verify)", f"/dashboard/runs/{run_id}"),
            ):
                first, p50, p95, size = timed(client, path, arguments.repeat)
                print(
                    f"{label:<24} first {first:7.1f} ms   p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
                    f"   {size / 1024:4.0f} KiB"
                )


if __name__ == "__main__":
    main()
