"""Benchmark (not a test): `audit verify` over a large trail, and the cost of a durable append.

    .venv/bin/python tests/bench/bench_audit.py [--records 100000] [--dir DIR] [--repeat 3]

Writes a trail through the real store (runs of 10 records: run-started, target-set, seven
steps with realistic evidence, run-finished; every run anchored), on /dev/shm when it exists
so that building 100k records does not wait for 100k fsyncs, then times, best of `--repeat`:
`AuditStore.verify()` alone and with the anchor file, and `rotation-bot audit verify` as a
command (process start, imports, anchor read included).  Also prints durable appends per
second in the default temp directory (WAL + synchronous=FULL: one fsync per commit).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.audit import Anchor, AuditStore  # noqa: E402

STEPS = (
    "plan",
    "read-release-notes",
    "bump-overrides",
    "regenerate-lockfile",
    "confirm-lockfile",
    "verify-tarballs",
    "propose",
)
EVIDENCE = {
    "pins": [
        {
            "name": f"@img/sharp-{platform}",
            "previous_version": "0.33.4",
            "new_version": "0.33.5",
            "new_integrity": "sha512-" + "A" * 86 + "==",
        }
        for platform in ("linux-x64", "linuxmusl-x64", "libvips-linux-x64", "libvips-linuxmusl-x64")
    ],
    "summary": "every pinned platform present at its pin; integrity equals the registry",
}


def build(store: AuditStore, records: int) -> None:
    for _ in range(records // 10):
        run_id = store.start_run(repo="/srv/app", runbook="sharp", trigger="schedule", actor="cron")
        store.set_target(run_id, "0.33.5")
        for kind in STEPS:
            store.append(run_id, kind, "passed", EVIDENCE, started_at=None)
        store.finish_run(
            run_id,
            outcome="proposed",
            message="proposed rotation-bot/sharp-0.33.5",
            proposal_title="Rotate sharp 0.33.4 → 0.33.5",
            proposal_body="body " * 400,
            proposal_url="local:/srv/app#rotation-bot/sharp-0.33.5",
        )


def best(repeat: int, action: Callable[[], object]) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, help="where the trail is built (default: /dev/shm)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    base = args.dir or (Path("/dev/shm") if Path("/dev/shm").is_dir() else None)
    with tempfile.TemporaryDirectory(dir=base, prefix="bench-audit-") as directory:
        root = Path(directory)
        database, anchor = root / "audit.sqlite3", root / "audit-anchor.log"
        store = AuditStore(f"sqlite:///{database}", anchor=Anchor(anchor))
        started = time.perf_counter()
        build(store, args.records)
        built = time.perf_counter() - started
        report = store.verify([anchor])
        assert report.ok, report.problems[:5]
        size = sum(path.stat().st_size for path in root.glob("audit.sqlite3*")) / 1e6
        print(f"trail: {report.records} records in {report.runs} runs, {size:.0f} MB ({root})")
        print(f"build: {built:.1f} s ({report.records / built:.0f} appends/s on {base or 'tmp'})")
        plain = best(args.repeat, store.verify)
        anchored = best(args.repeat, lambda: store.verify([anchor]))
        print(f"verify: {plain:.2f} s ({report.records / plain:,.0f} records/s)")
        print(f"verify with {report.anchored} anchored heads: {anchored:.2f} s")
        environment = {
            **os.environ,
            "ROTATION_BOT_DATABASE_URL": f"sqlite:///{database}",
            "ROTATION_BOT_AUDIT_ANCHOR": str(anchor),
        }
        command = best(
            args.repeat,
            lambda: subprocess.run(
                [sys.executable, "-m", "bot", "audit", "verify"],
                env=environment,
                check=True,
                capture_output=True,
            ),
        )
        print(f"`rotation-bot audit verify` command: {command:.2f} s")
    with tempfile.TemporaryDirectory() as disk:  # the default temp dir: a real disk here
        store = AuditStore(f"sqlite:///{Path(disk) / 'audit.sqlite3'}")
        run_id = store.start_run(repo="/srv/app", runbook="sharp", trigger="cli", actor="bench")
        count = 200
        started = time.perf_counter()
        for _ in range(count):
            store.append(run_id, "verify-tarballs", "passed", EVIDENCE, started_at=None)
        elapsed = time.perf_counter() - started
        print(
            f"durable appends on {disk}: {count / elapsed:.0f}/s ({1000 * elapsed / count:.1f} ms each)"
        )


if __name__ == "__main__":
    main()
