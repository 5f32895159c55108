"""A real PostgreSQL server for the tests: Debian's `postgresql` (installed by
`deploy/bootstrap.sh --test`), initialised in a fresh temp directory and listening on
127.0.0.1 on a free port; one database per test.

PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (the data
directory is a temp dir of its own, not a pytest tmp_path, which that user cannot enter).  Stop
it with `Postgres.stop()`; `start_postgres` is the one factory every test uses.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg

from tests.support.processes import free_port, stop_process

_VERSION = re.compile(r"^\d+$")


def _binaries() -> Path:
    """The newest installed server's bin directory."""
    root = Path("/usr/lib/postgresql")
    versions = (
        sorted(
            (int(entry.name) for entry in root.iterdir() if _VERSION.match(entry.name)),
            reverse=True,
        )
        if root.is_dir()
        else []
    )
    for version in versions:
        if (root / str(version) / "bin" / "initdb").exists():
            return root / str(version) / "bin"
    raise RuntimeError(
        "no PostgreSQL server under /usr/lib/postgresql: run `bash deploy/bootstrap.sh --test`"
    )


@dataclass
class Postgres:
    """A running server: where it listens, and the means to make databases and to stop it."""

    host: str
    port: int
    directory: Path
    process: subprocess.Popen[bytes]
    databases: list[str] = field(default_factory=list)

    def admin_dsn(self, database: str = "postgres") -> str:
        return f"host={self.host} port={self.port} user=postgres dbname={database}"

    def create_database(self, name: str) -> str:
        """A new empty database; returns its SQLAlchemy URL (psycopg 3 driver)."""
        with psycopg.connect(self.admin_dsn(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}"')  # name chosen by the test
        self.databases.append(name)
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/{name}"

    def stop(self) -> None:
        """Stop the server and remove its files."""
        stop_process(self.process)
        shutil.rmtree(self.directory, ignore_errors=True)


def start_postgres() -> Postgres:
    """Initialise and start a server in a new temp directory; returns once it answers."""
    binaries = _binaries()
    as_user = "postgres" if os.geteuid() == 0 else None
    directory = Path(tempfile.mkdtemp(prefix="rotation-bot-postgres-"))
    data = directory / "data"
    if as_user:
        shutil.chown(directory, as_user, as_user)
    subprocess.run(
        [
            str(binaries / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "--auth=trust",
            "--encoding=UTF8",
            "--locale=C",
            "--no-sync",
        ],
        user=as_user,
        group=as_user,
        check=True,
        capture_output=True,
    )
    port = free_port()
    log = directory / "server.log"
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                str(binaries / "postgres"),
                "-D",
                str(data),
                "-h",
                "127.0.0.1",
                "-p",
                str(port),
                "-k",
                str(directory),
                "-c",
                "fsync=off",
                "-c",
                "max_connections=100",
            ],
            user=as_user,
            group=as_user,
            stdout=output,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    server = Postgres("127.0.0.1", port, directory, process)
    deadline = time.monotonic() + 60
    while True:
        try:
            with psycopg.connect(server.admin_dsn(), connect_timeout=2):
                return server
        except psycopg.OperationalError:
            if process.poll() is not None or time.monotonic() > deadline:
                tail = log.read_text(errors="replace")[-2000:]
                server.stop()
                raise RuntimeError(f"PostgreSQL did not start; see {log}: {tail}") from None
            time.sleep(0.1)
