"""A real npm registry for the tests: Verdaccio 6 on 127.0.0.1, offline (no uplinks).

Packages are published with one HTTP PUT each (packument + base64 tarball), as npm does, so a
fixture registry with a dozen packages is ready in about a second.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx

from tests.support.processes import free_port, stop_process, wait_for_http

HARNESS = Path(__file__).resolve().parent.parent / "harness"
VERDACCIO = HARNESS / "node_modules" / "verdaccio" / "bin" / "verdaccio"
TOOLS = HARNESS / "tools"


def make_tarball(manifest: Mapping[str, Any], files: Mapping[str, bytes] | None = None) -> bytes:
    """A deterministic npm tarball: package/package.json plus `files`."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        entries = {"package.json": json.dumps(manifest, indent=2).encode(), **(files or {})}
        for name, data in sorted(entries.items()):
            info = tarfile.TarInfo(f"package/{name}")
            info.size = len(data)
            info.mtime = 499162500
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    # gzip's header carries a time: fix it, or two calls a second apart differ
    return gzip.compress(buffer.getvalue(), compresslevel=9, mtime=0)


def integrity_of(data: bytes) -> str:
    """The sha512 SRI string of `data`."""
    return "sha512-" + base64.b64encode(hashlib.sha512(data).digest()).decode()


@dataclass
class Verdaccio:
    """A running Verdaccio: its URL, a publish token, and its storage directory."""

    url: str
    token: str
    storage: Path
    process: subprocess.Popen[bytes]
    published: dict[str, dict[str, Any]] = field(default_factory=dict)

    def publish(
        self,
        name: str,
        version: str,
        *,
        extra: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
        dist_extra: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Publish `name@version` (manifest fields from `extra`); returns the manifest sent."""
        manifest: dict[str, Any] = {"name": name, "version": version, **(extra or {})}
        return self.publish_tarball(make_tarball(manifest, files), dist_extra=dist_extra)

    def publish_tarball(
        self, tarball: bytes, *, dist_extra: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        """Publish a tarball as it is (its package/package.json is the manifest)."""
        with tarfile.open(fileobj=io.BytesIO(tarball), mode="r:gz") as archive:
            member = archive.extractfile("package/package.json")
            assert member is not None
            manifest: dict[str, Any] = json.loads(member.read())
        name, version = manifest["name"], manifest["version"]
        filename = f"{name.rsplit('/', maxsplit=1)[-1]}-{version}.tgz"
        manifest["dist"] = {
            "integrity": integrity_of(tarball),
            "shasum": hashlib.sha1(tarball).hexdigest(),  # noqa: S324 - npm's legacy field
            "tarball": f"{self.url}{name}/-/{filename}",
            **(dist_extra or {}),
        }
        manifest["_id"] = f"{name}@{version}"
        body = {
            "_id": name,
            "name": name,
            "dist-tags": {"latest": version} if "-" not in version else {"next": version},
            "versions": {version: manifest},
            "_attachments": {
                filename: {
                    "content_type": "application/octet-stream",
                    "data": base64.b64encode(tarball).decode(),
                    "length": len(tarball),
                }
            },
        }
        response = httpx.put(
            f"{self.url}{quote(name, safe='@')}",
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=30,
        )
        response.raise_for_status()
        self.published[f"{name}@{version}"] = manifest
        return manifest

    def integrity(self, name: str, version: str) -> str:
        """The `dist.integrity` this registry was sent for `name@version`."""
        value: str = self.published[f"{name}@{version}"]["dist"]["integrity"]
        return value

    def tarball_path(self, name: str, version: str) -> Path:
        """Where Verdaccio stores a tarball on disk (to tamper with it)."""
        return self.storage / name / f"{name.rsplit('/', maxsplit=1)[-1]}-{version}.tgz"

    def tamper(self, name: str, version: str) -> None:
        """Corrupt the stored tarball of `name@version` (its last 8 bytes), so the registry serves
        bytes that no longer match the integrity it publishes."""
        tarball = self.tarball_path(name, version)
        tarball.write_bytes(tarball.read_bytes()[:-8] + b"tampered")

    def stop(self) -> None:
        """Stop the server by its process group."""
        stop_process(self.process)


def publish_tools(registry: Verdaccio) -> None:
    """The real npm/pnpm/yarn tarballs packed by the test set-up (tests/harness/tools.txt),
    which the bot installs from the registry like any package."""
    for tarball in sorted(TOOLS.glob("*.tgz")):
        registry.publish_tarball(tarball.read_bytes())


def start_verdaccio(directory: Path, *, access: str = "$all") -> Verdaccio:
    """Start Verdaccio in `directory`, create a user, and wait until it answers (`access`:
    who may read packages; `$authenticated` refuses requests without the token)."""
    if not VERDACCIO.exists():
        raise RuntimeError(f"{VERDACCIO} missing: run `npm ci` in {HARNESS} (tests/run.sh does)")
    port = free_port()
    storage = directory / "storage"
    storage.mkdir(parents=True)
    (directory / "htpasswd").touch()
    config = directory / "config.yaml"
    config.write_text(
        f"""storage: {storage}
auth:
  htpasswd:
    file: {directory / "htpasswd"}
    max_users: 1000
uplinks: {{}}
packages:
  '@*/*':
    access: {access}
    publish: $authenticated
  '**':
    access: {access}
    publish: $authenticated
listen: 127.0.0.1:{port}
log: {{type: stdout, level: warn}}
"""
    )
    log = (directory / "verdaccio.log").open("wb")
    process = subprocess.Popen(
        ["node", str(VERDACCIO), "--config", str(config)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={"PATH": os.environ["PATH"], "HOME": str(directory)},
    )
    url = f"http://127.0.0.1:{port}/"
    wait_for_http(f"{url}-/ping", process, directory / "verdaccio.log", ok=(200,))
    response = httpx.put(
        f"{url}-/user/org.couchdb.user:tester",
        json={"name": "tester", "password": "tester-password"},
        timeout=10,
    )
    response.raise_for_status()
    return Verdaccio(url=url, token=response.json()["token"], storage=storage, process=process)


@contextmanager
def running_verdaccio(directory: Path, *, access: str = "$all") -> Iterator[Verdaccio]:
    """A fresh Verdaccio of its own in `directory` (`start_verdaccio`), stopped when the block
    ends, however it ends: the one way fixtures start a registry."""
    server = start_verdaccio(directory, access=access)
    try:
        yield server
    finally:
        server.stop()
