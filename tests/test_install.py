"""Installed as a user installs it: the built wheel, in a fresh virtualenv outside the checkout.

The editable install every other test uses resolves `bot/` (and once, `runbooks/`) from the
checkout; a wheel must carry everything it needs.  Dependencies come from the test virtualenv
through a path entry (no network), but rotation-bot itself only from the wheel.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

from tests.conftest import Env, make_project

ROOT = Path(__file__).resolve().parent.parent


def _build_wheel(directory: Path) -> Path:
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(directory),
            str(ROOT),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = directory.glob("rotation_bot-*.whl")
    return wheel


def test_the_wheel_carries_its_runbooks_and_runs_from_anywhere(tmp_path: Path, env: Env) -> None:
    wheel = _build_wheel(tmp_path / "dist")
    names = zipfile.ZipFile(wheel).namelist()
    for shipped in (
        "bot/data/runbooks/sharp.yml",
        "bot/data/runbooks/base-image.yml",
        "bot/data/runbooks/sharp.md",
        "bot/data/sigstore-trusted-root.json",
    ):
        assert shipped in names, f"the wheel lacks {shipped}"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    site = Path(
        subprocess.run(
            [
                str(venv / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
    )
    # the test virtualenv's dependencies, as a plain path entry: its .pth files (the editable
    # rotation-bot among them) are not processed from there
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
    )
    project = tmp_path / "app"
    make_project(project, env)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    variables = {k: v for k, v in env.variables().items() if k != "ROTATION_BOT_RUNBOOKS_DIR"}
    located = subprocess.run(
        [str(venv / "bin" / "python"), "-c", "import bot; print(bot.__file__)"],
        cwd=elsewhere,
        env=variables,
        check=True,
        capture_output=True,
        text=True,
    )
    assert located.stdout.startswith(str(site)), "rotation-bot came from the checkout"
    result = subprocess.run(
        [str(venv / "bin" / "rotation-bot"), "plan", "--repo", str(project), "--json"],
        cwd=elsewhere,
        env=variables,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    plans = json.loads(result.stdout)
    assert {plan["runbook"] for plan in plans} == {"sharp", "base-image"}
    sharp = next(plan for plan in plans if plan["runbook"] == "sharp")
    assert [rotation["new_version"] for rotation in sharp["rotations"]] == ["0.33.6", "0.34.1"]
    assert os.path.commonpath([site, located.stdout.strip()]) == str(site)
