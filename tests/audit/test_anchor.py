"""The anchor: each finished run's chain head appended to a file (O_APPEND, so it works on an
append-only file), logged, and sent to syslog; read back from any of them."""

from __future__ import annotations

import json
import logging
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.audit import Anchor, AuditStore, read_anchors
from bot.errors import ConfigError
from tests.audit.conftest import REPO, Trail, build_trail


def heads_in_database(store: AuditStore) -> list[tuple[int, str]]:
    return [
        (record["seq"], record["hash"])
        for record in store.records()
        if record["kind"] == "run-finished"
    ]


def test_each_finished_run_appends_its_head_to_the_file_and_the_log(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="bot.audit.anchor"):
        trail = build_trail(tmp_path)

    lines = [json.loads(line) for line in trail.anchor.read_text().splitlines()]
    assert [(line["seq"], line["hash"]) for line in lines] == heads_in_database(trail.store)
    assert [line["run_id"] for line in lines] == [trail.first, trail.second, trail.newest]
    logged = [r for r in caplog.records if getattr(r, "event", None) == "audit-anchor"]
    assert [(r.seq, r.hash) for r in logged] == heads_in_database(trail.store)  # type: ignore[attr-defined]


@pytest.fixture
def append_only(tmp_path: Path) -> Iterator[Path]:
    """An anchor file made append-only (`chattr +a`), as docs/AUDIT.md advises."""
    path = tmp_path / "append-only.log"
    path.touch()
    if subprocess.run(["chattr", "+a", str(path)], capture_output=True, check=False).returncode:
        pytest.skip("chattr +a needs root and a file system with attributes")
    try:
        yield path
    finally:
        subprocess.run(["chattr", "-a", str(path)], check=True)


def test_an_append_only_anchor_file_keeps_working_and_cannot_be_rewritten(
    tmp_path: Path, append_only: Path
) -> None:
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}", anchor=Anchor(append_only))
    run_id = store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="alice")
    store.ensure_durable()
    store.finish_run(run_id, outcome="nothing-to-do", message="nothing to rotate")

    assert len(append_only.read_text().splitlines()) == 1
    with pytest.raises(PermissionError):
        append_only.write_text("")  # the database's writer cannot rewrite history


def test_heads_are_sent_to_syslog_and_a_syslog_file_verifies(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as collector:
        collector.bind(("127.0.0.1", 0))
        collector.settimeout(10)
        port = collector.getsockname()[1]
        store = AuditStore(
            f"sqlite:///{tmp_path / 'audit.sqlite3'}",
            anchor=Anchor(tmp_path / "anchor.log", syslog=f"udp://127.0.0.1:{port}"),
        )
        for _ in range(2):
            run_id = store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="a")
            store.finish_run(run_id, outcome="nothing-to-do", message="nothing to rotate")
        received = [collector.recv(4096).decode() for _ in range(2)]

    assert all(line.startswith("<14>rotation-bot: {") for line in received)
    syslog_file = tmp_path / "syslog"
    syslog_file.write_text("".join(f"Nov 22 06:00:01 host {line}\n" for line in received))
    report = store.verify([syslog_file])
    assert report.ok and report.anchored == 2 and report.newest_anchored == 4


def test_a_bad_syslog_address_is_a_one_line_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="ROTATION_BOT_AUDIT_SYSLOG='syslog.example:514'"):
        Anchor(tmp_path / "a.log", syslog="syslog.example:514")


def test_text_and_json_log_lines_are_anchors_and_other_lines_are_ignored(
    tmp_path: Path, trail: Trail
) -> None:
    (seq, digest), *_ = heads_in_database(trail.store)
    log = tmp_path / "service.log"
    log.write_text(
        "INFO bot.pipeline: run started repo=/srv/app\n"
        f"INFO bot.audit.anchor: audit chain head anchored event=audit-anchor hash={digest} "
        f"run_id={trail.first} seq={seq}\n"
        + json.dumps(
            {
                "level": "INFO",
                "message": "audit chain head anchored",
                "event": "audit-anchor",
                "seq": seq,
                "hash": digest,
            }
        )
        + "\n"
    )
    reading = read_anchors(log)
    assert [(head.seq, head.hash, head.source) for head in reading.heads] == [
        (seq, digest, f"{log}:2"),
        (seq, digest, f"{log}:3"),
    ]
    assert reading.problems == () and trail.store.verify([log]).ok


def test_a_mangled_anchor_line_or_a_file_without_anchors_fails_verify(trail: Trail) -> None:
    with trail.anchor.open("a") as file:
        file.write('{"event": "audit-anchor", "seq": "x"}\n')
    empty = trail.anchor.with_name("empty.log")
    empty.write_text("nothing here\n")

    report = trail.store.verify([trail.anchor, empty])

    assert report.problems == (
        f"anchor {trail.anchor}:4: not a valid audit-anchor line",
        f"anchor {empty}: holds no audit-anchor line",
    )


def test_an_unreadable_anchor_is_a_config_error(tmp_path: Path, trail: Trail) -> None:
    with pytest.raises(ConfigError, match=r"audit anchor .*missing\.log: cannot read"):
        trail.store.verify([tmp_path / "missing.log"])


def test_an_anchor_that_cannot_be_appended_to_stops_publishing_but_not_recording(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "anchor-is-a-directory"
    directory.mkdir()
    store = AuditStore(f"sqlite:///{tmp_path / 'audit.sqlite3'}", anchor=Anchor(directory))
    run_id = store.start_run(repo=REPO, runbook="sharp", trigger="cli", actor="alice")

    with pytest.raises(ConfigError, match="audit anchor .* cannot be appended to"):
        store.ensure_durable()
    with caplog.at_level(logging.ERROR, logger="bot.audit.anchor"):
        store.finish_run(run_id, outcome="failed", message="anchor unusable")

    assert [r.getMessage() for r in caplog.records] == ["audit anchor not written"]
    assert store.verify().ok
