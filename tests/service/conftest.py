"""A fleet's audit trail for the dashboard tests, made by running real rotations.

`fleet` (built once per test session, copied for each xdist worker) runs the real `rotation-bot run` against a private
Verdaccio (the fake sharp family, plus two releases carrying hostile registry text) and a real OCI
registry:

- `web`: sharp 0.33.4 with a Dockerfile whose tag moved: patch 0.33.9 (its manifest adds a hostile
  install script, so a risk signal quotes it), major 0.34.1 (call sites), a base-image rotation;
  then the patch branch is merged and `web` runs again, so the patch's merge is seen;
- `api`: the linuxmusl binary of 0.33.9 tampered on the registry: verify-tarballs fails, an
  incident is filed, nothing is published;
- `hostile`: written through `AuditStore`'s API, every string a registry or repository could
  control replaced by markup, markdown links and `javascript:` URLs.

Both real repositories see sharp 0.33.8, deprecated with a hostile message (a held line).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from filelock import FileLock

from bot.audit import AuditStore
from bot.models import utc_now
from tests.conftest import Env, bot, make_project, publish_family, publish_sharp
from tests.support.oci_registry import Registry, start_registry
from tests.support.verdaccio import Verdaccio, start_verdaccio

HOSTILE_DEPRECATION = (
    "<script>alert('deprecated')</script> moved, see [the fix](javascript:alert(1)) "
    '<img src=x onerror="alert(2)"> @octocat'
)
HOSTILE_SCRIPT = "<script>alert('install')</script>node [x](javascript:alert(3))"
HOSTILE_REPO = "evil/<img src=x onerror=alert(4)>"
HOSTILE_URL = "javascript:alert(6)"
OLD_DATE = "2024-01-01T00:00:00Z"
NEW_DATE = "2024-02-01T00:00:00Z"


@dataclass(frozen=True)
class Fleet:
    """The fleet's audit store and what the tests look for in it."""

    database_url: str
    web: str
    api: str
    runs: dict[str, str]
    digests: dict[str, str]

    def store(self) -> AuditStore:
        """The audit store."""
        return AuditStore(self.database_url)


def _run(env: Env, path: Path, *extra: str) -> None:
    result = bot(env, "run", "--repo", str(path), *extra)
    assert result.exit_code in (0, 1), result.output


def _write_hostile(store: AuditStore) -> str:
    run_id = store.start_run(
        repo=HOSTILE_REPO, runbook="sharp", trigger="chat", actor="<script>alert(5)</script>"
    )
    now = utc_now()
    store.append(
        run_id,
        "plan",
        "passed",
        {
            "repo": HOSTILE_REPO,
            "runbook": "sharp",
            "current_version": "0.33.4<b>bold</b>",
            "current_pins": [{"name": "@img/<i>x</i>", "version": "1.0.0"}],
            "rotations": [],
            "skipped": [{"subject": "sharp@9.9.9", "reason": HOSTILE_DEPRECATION}],
        },
        started_at=now - timedelta(seconds=2),
        finished_at=now,
    )
    store.append(
        run_id,
        "verify-signatures",
        "failed",
        {
            "error": "verification",
            "message": f"signature of <b>sharp</b> failed: {HOSTILE_DEPRECATION}",
            "problems": ["[click me](javascript:alert(8)) <iframe src=//example.com></iframe>"],
        },
        started_at=now,
        finished_at=now,
    )
    store.finish_run(
        run_id,
        outcome="failed",
        message="step verify-signatures failed: <script>alert(9)</script>",
        proposal_title="<script>alert(10)</script>",
        proposal_body="## Rotate\n\n[click](javascript:alert(11)) <script>alert(12)</script>\n",
        proposal_url=HOSTILE_URL,
    )
    return run_id


def _build(root: Path) -> dict[str, Any]:
    """Run the rotations into `root/state/audit.sqlite3`; returns what the tests look for."""
    verdaccio: Verdaccio = start_verdaccio(root / "verdaccio")
    oci: Registry = start_registry(root / "oci")
    try:
        publish_family(verdaccio)
        publish_sharp(
            verdaccio, "0.33.9", "1.0.4", parent_extra={"scripts": {"install": HOSTILE_SCRIPT}}
        )
        verdaccio.publish(
            "sharp", "0.33.8", extra={"main": "index.js", "deprecated": HOSTILE_DEPRECATION}
        )
        old = oci.push_index("fleet/node", "20", "node one", created=OLD_DATE)
        new = oci.push_index("fleet/node", "20", "node two", created=NEW_DATE)
        env = Env(root, verdaccio.url, verdaccio.token)
        web = root / "web"
        repo = make_project(
            web,
            env,
            files={
                "Dockerfile": f'FROM {oci.host}/fleet/node:20@{old}\nCMD ["node"]\n',
                "src/resize.js": "const sharp = require('sharp');\nmodule.exports = sharp;\n",
            },
        )
        _run(env, web)
        verdaccio.tamper("@img/sharp-linuxmusl-x64", "0.33.9")
        api = root / "api"
        make_project(
            api,
            env,
            config="runbooks:\n  sharp:\n    minimum-release-age: 0\n    major: false\n",
        )
        _run(env, api)
        repo.git.merge("rotation-bot/sharp-0.33.9", "--no-edit")  # the patch PR is merged
        _run(env, web, "--runbook", "sharp")
    finally:
        oci.stop()
        verdaccio.stop()
    store = AuditStore(f"sqlite:///{env.state / 'audit.sqlite3'}")
    runs: dict[str, str] = {"hostile": _write_hostile(store)}
    for row in store.list_runs(limit=100):
        key = f"{Path(row['repo']).name}:{row['runbook']}:{row['target']}:{row['outcome']}"
        runs.setdefault(key, row["id"])
    with store.engine.begin() as connection:  # one self-contained file to copy
        connection.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    store.engine.dispose()
    return {"web": str(web), "api": str(api), "runs": runs, "digests": {"old": old, "new": new}}


@pytest.fixture(scope="session")
def fleet(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Fleet:
    """The fleet, built once per test session (xdist workers share one build under a lock) and
    copied for each worker, whose service writes its own tables into the database."""
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if worker_id != "master" else base  # the session's own directory
    built = shared / "fleet"
    with FileLock(str(shared / "fleet.lock")):
        manifest = built / "fleet.json"
        if not manifest.exists():
            built.mkdir(exist_ok=True)
            manifest.write_text(json.dumps(_build(built)))
    copy = tmp_path_factory.mktemp("fleet-copy") / "audit.sqlite3"
    shutil.copyfile(built / "state" / "audit.sqlite3", copy)
    return Fleet(database_url=f"sqlite:///{copy}", **json.loads(manifest.read_text()))
