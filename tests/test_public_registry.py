"""Against the public npm registry (deselect offline with `-m "not network"`): the demo's
sharp 0.33.4 → 0.33.5 rotation must produce the exact real pins and integrity values."""

from __future__ import annotations

import json
import os
from pathlib import Path

import git
import pytest
from click.testing import CliRunner

from bot.audit import AuditStore
from bot.cli import main

REAL_0_33_5 = {
    "sharp": (
        "0.33.5",
        "sha512-haPVm1EkS9pgvHrQ/F3Xy+hgcuMV0Wm9vfIBSiwZ05k+xgb0PkBQpGsAA/oWdDobNaZTH5ppvHtzCFbnSEwHVw==",
    ),
    "@img/sharp-linux-x64": (
        "0.33.5",
        "sha512-opC+Ok5pRNAzuvq1AG0ar+1owsu842/Ab+4qvU879ippJBHvyY5n2mxF1izXqkPYlGuP/M556uh53jRLJmzTWA==",
    ),
    "@img/sharp-libvips-linux-x64": (
        "1.0.4",
        "sha512-MmWmQ3iPFZr0Iev+BAgVMb3ZyC4KeFc3jFxnNbEPas60e1cIfevbtuyf9nDGIzOaW9PdnDciJm+wFFaTlj5xYw==",
    ),
    "@img/sharp-linuxmusl-x64": (
        "0.33.5",
        "sha512-WT+d/cgqKkkKySYmqoZ8y3pxx7lx9vVejxW/W4DOFMYVSkErR+w7mf2u8m/y4+xHe7yY9DAXQMWQhpnMuFfScw==",
    ),
    "@img/sharp-libvips-linuxmusl-x64": (
        "1.0.4",
        "sha512-viYN1KX9m+/hGkJtvYYp+CCLgnJXwiQB39damAO7WMdKWlIhmYTfHjwSbQeUK/20vY154mwezd9HflVFM1wVSw==",
    ),
}


@pytest.mark.network
def test_demo_rotates_sharp_0_33_4_to_0_33_5_with_the_real_pins(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "NPM_CONFIG_USERCONFIG": str(home / ".npmrc"),
        "ROTATION_BOT_STATE_DIR": str(tmp_path / "state"),
        "ROTATION_BOT_RELEASE_NOTES_URL": "http://127.0.0.1:9",
    }
    sample = tmp_path / "sample"

    result = CliRunner().invoke(
        main, ["demo", "--dir", str(sample), "--json"], env=environment, catch_exceptions=False
    )

    assert result.exit_code == 0, result.output
    summaries = {s["target"]: s for s in json.loads(result.stdout) if s["runbook"] == "sharp"}
    assert summaries["0.33.5"]["outcome"] == "proposed"
    repo = git.Repo(sample)
    manifest = json.loads(repo.git.show("rotation-bot/sharp-0.33.5:package.json"))
    assert manifest["dependencies"]["sharp"] == "0.33.5"
    assert manifest["overrides"] == {
        name: version for name, (version, _) in REAL_0_33_5.items() if name != "sharp"
    }
    lock = json.loads(repo.git.show("rotation-bot/sharp-0.33.5:package-lock.json"))["packages"]
    for name, (version, integrity) in REAL_0_33_5.items():
        assert (
            lock[f"node_modules/{name}"]["version"],
            lock[f"node_modules/{name}"]["integrity"],
        ) == (version, integrity)
    body = summaries["0.33.5"]["proposal"]["body"]
    assert REAL_0_33_5["@img/sharp-libvips-linuxmusl-x64"][1] in body
    assert AuditStore(f"sqlite:///{tmp_path / 'state' / 'audit.sqlite3'}").verify().ok
