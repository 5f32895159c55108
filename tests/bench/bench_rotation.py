"""Benchmark (not a test): wall time and peak memory of `rotation-bot plan` and `run` on the
demo repository, next to the bare `npm install --package-lock-only` on the same repository.

    .venv/bin/python tests/bench/bench_rotation.py [--repeat 5]

Targets: `plan` well under 0.5 s and 100 MB; `run` (one rotation, all verification steps)
within 1.3x the bare npm command.  Talks to the configured npm registry (public by default).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

BIN = Path(sys.executable).parent


def measure(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one command and the processes it waited for."""
    started = time.perf_counter()
    process = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(
            f"{argv} failed: {process.stderr.read().decode() if process.stderr else ''}"
        )
    return seconds, usage.ru_maxrss / 1024


def report(name: str, samples: list[tuple[float, float]]) -> float:
    times = [sample[0] for sample in samples]
    memory = max(sample[1] for sample in samples)
    median = statistics.median(times)
    print(
        f"{name:<38} median {median:6.3f}s  min {min(times):6.3f}s  peak RSS {memory:6.1f} MB"
        f"  (n={len(samples)})"
    )
    return median


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument(
        "--cold",
        action="store_true",
        help="give every npm run (the bot's and the bare one) an empty cache",
    )
    arguments = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="rotation-bot-bench-"))
    passthrough = (
        "HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "HTTPS_PROXY",
        "HTTP_PROXY",
        "NO_PROXY",
    )
    env = {
        **{name: os.environ[name] for name in passthrough if name in os.environ},
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "ROTATION_BOT_STATE_DIR": str(root / "state"),
        "ROTATION_BOT_RELEASE_NOTES_URL": "http://127.0.0.1:9",
    }
    bot = [str(BIN / "rotation-bot")]
    sample = root / "sample"
    # Build the demo repository (and warm the caches: npm's and the bot's packument cache).
    subprocess.run(
        [*bot, "demo", "--dir", str(sample)],
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    subprocess.run(
        [
            "git",
            "-C",
            str(sample),
            "branch",
            "-D",
            "rotation-bot/sharp-0.33.5",
            "rotation-bot/sharp-0.34.5",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )

    plans = [
        measure([*bot, "plan", "--repo", str(sample), "--runbook", "sharp"], sample, env)
        for _ in range(arguments.repeat)
    ]

    runs = []
    for index in range(arguments.repeat):
        env["ROTATION_BOT_STATE_DIR"] = str(root / f"state-{index}")
        if not arguments.cold:
            shutil.copytree(root / "state" / "npm-cache", root / f"state-{index}" / "npm-cache")
        runs.append(
            measure(
                [*bot, "run", "--repo", str(sample), "--runbook", "sharp", "--target", "0.33.5"],
                sample,
                env,
            )
        )
        subprocess.run(
            ["git", "-C", str(sample), "branch", "-D", "rotation-bot/sharp-0.33.5"],
            check=True,
            stdout=subprocess.DEVNULL,
        )

    # The bare npm command on the same repository with the same bumped package.json.
    bare = root / "bare"
    npm_samples = []
    for index in range(arguments.repeat):
        cache = root / (f"cold-cache-{index}" if arguments.cold else "state/npm-cache")
        npm_env = {**env, "NPM_CONFIG_CACHE": str(cache)}
        shutil.rmtree(bare, ignore_errors=True)
        subprocess.run(["git", "clone", "-q", str(sample), str(bare)], check=True)
        subprocess.run(
            ["git", "-C", str(sample), "show", "main:package.json"],
            check=True,
            stdout=(bare / "package.json").open("w"),
        )
        text = (bare / "package.json").read_text()
        for old, new in (("0.33.4", "0.33.5"), ("1.0.2", "1.0.4")):
            text = text.replace(f'"{old}"', f'"{new}"')
        (bare / "package.json").write_text(text)
        npm_samples.append(
            measure(
                [
                    "npm",
                    "install",
                    "--package-lock-only",
                    "--ignore-scripts",
                    "--no-audit",
                    "--no-fund",
                ],
                bare,
                npm_env,
            )
        )

    print(f"demo repository: {sample} ({'cold' if arguments.cold else 'warm'} npm cache)")
    plan_time = report("rotation-bot plan", plans)
    run_time = report("rotation-bot run (one rotation)", runs)
    npm_time = report("npm install --package-lock-only (bare)", npm_samples)
    print(
        f"plan target < 0.5 s: {'met' if plan_time < 0.5 else 'NOT met'}; "
        f"run / bare npm = {run_time / npm_time:.2f}x (target 1.3x)"
    )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
