"""Benchmark (not a test): peak memory and time for hostile repository files.

    .venv/bin/python tests/bench/bench_hostile_inputs.py [--megabytes 10]

Each case runs in a fresh Python process on a real git checkout and reports that process's peak
RSS (`ru_maxrss`) and wall time:

- `baseline`: importing the bot and opening the checkout, nothing read;
- `before`: what the watcher did before the size caps, `PackageJson.parse` on the whole
  N MB package.json (an array of N million small values: the shape that costs the most per
  byte); run under a 4 GiB address-space limit so it cannot take the machine down;
- `after`: `Workspace.read_text("package.json")` on the same file: refused by its size before
  a byte of it is read;
- `largest accepted`: `PackageJson.parse` of the same shape just under the 512 KiB cap;
- `lockfile at the cap`: `Lockfile.parse` of a realistic lockfile (one entry per package) just
  under the 64 MiB cap;
- `20,000 levels deep`: `Workspace.read_text` of a package.json nested 20,000 levels deep.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MEASURE = """
import resource, sys, time
from pathlib import Path
started = time.monotonic()
limit = int(sys.argv[3])
if limit:
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from bot.errors import BotError
from bot.manifests.lockfile import Lockfile
from bot.manifests.package_json import PackageJson
from bot.workspace import Workspace
workspace = Workspace.open_local(Path(sys.argv[1]))
case = sys.argv[2]
outcome = "ok"
try:
    if case == "before":
        PackageJson.parse((Path(sys.argv[1]) / "package.json").read_text())
    elif case in ("after", "deep"):
        workspace.read_text("big/package.json" if case == "after" else "deep/package.json")
    elif case == "accepted":
        PackageJson.parse(workspace.read_text("accepted/package.json"))
    elif case == "lockfile":
        Lockfile.parse(workspace.read_text("lock/package-lock.json"))
except BotError as error:
    outcome = "refused: " + error.message[:90]
except MemoryError:
    outcome = "MemoryError (hit the address-space limit)"
# VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent across fork and exec
status = Path("/proc/self/status").read_text()
peak = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))) / 1024
print(f"{peak:7.1f} MiB peak RSS {time.monotonic() - started:6.2f} s  {outcome}")
"""


def package_json(megabytes: float) -> str:
    """`megabytes` MB (10**6 bytes) of JSON: mostly `0,` two bytes per value."""
    head = '{"dependencies":{"sharp":"0.33.4"},"x":['
    values = (int(megabytes * 1e6) - len(head) - 2) // 2
    return head + ",".join("0" * values) + "]}"


def lockfile(megabytes: float) -> str:
    packages: dict[str, object] = {"": {"name": "app", "dependencies": {"sharp": "0.33.4"}}}
    entry = {
        "version": "1.2.3",
        "resolved": "https://registry.npmjs.org/p/-/p-1.2.3.tgz",
        "integrity": "sha512-" + "A" * 86 + "==",
        "dependencies": {"a": "^1.0.0", "b": "^2.0.0"},
        "engines": {"node": ">=18"},
    }
    for index in range(1000):
        packages[f"node_modules/package-{index:06d}"] = entry
    per_entry = len(json.dumps({"packages": packages}, indent=2)) / 1000
    for index in range(1000, int(megabytes * 1024 * 1024 / per_entry)):
        packages[f"node_modules/package-{index:06d}"] = entry
    return json.dumps({"name": "app", "lockfileVersion": 3, "packages": packages}, indent=2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--megabytes", type=float, default=10.0)
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as directory:
        root = Path(directory) / "app"
        for name in ("accepted", "lock", "deep", "big"):
            (root / name).mkdir(parents=True)
        big = package_json(arguments.megabytes)
        (root / "package.json").write_text(big)
        (root / "big" / "package.json").write_text(big)
        (root / "accepted" / "package.json").write_text(package_json(0.52))
        (root / "lock" / "package-lock.json").write_text(lockfile(63.5))
        (root / "deep" / "package.json").write_text('{"x": ' + "[" * 20_000 + "]" * 20_000 + "}")
        environ = {"PATH": os.environ["PATH"], "HOME": directory, "PYTHONPATH": str(ROOT)}
        git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
        subprocess.run([*git, "init", "-q", "-b", "main", str(root)], check=True, env=environ)
        subprocess.run([*git, "-C", str(root), "add", "-A"], check=True, env=environ)
        subprocess.run([*git, "-C", str(root), "commit", "-qm", "x"], check=True, env=environ)
        del big  # the measured processes start from `python`, not from a copy of this one
        print(f"python {sys.version.split()[0]}")
        cases = [
            ("baseline", "baseline", 0),
            (f"before ({arguments.megabytes:g} MB, parsed)", "before", 4 * 1024**3),
            (f"after ({arguments.megabytes:g} MB, read_text)", "after", 0),
            ("largest accepted (0.52 MB < 512 KiB)", "accepted", 0),
            ("lockfile at the cap (63.5 MiB)", "lockfile", 0),
            ("20,000 levels deep", "deep", 0),
        ]
        for label, case, limit in cases:
            result = subprocess.run(
                [sys.executable, "-c", MEASURE, str(root), case, str(limit)],
                capture_output=True,
                text=True,
                env=environ,
                check=False,
            )
            line = result.stdout.strip() or result.stderr.strip().splitlines()[-1]
            print(f"{label:<38} {line}")


if __name__ == "__main__":
    main()
