"""Registry credentials from docker's `config.json` (`DOCKER_CONFIG` or `~/.docker/config.json`)."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bot.errors import ConfigError, register_secret
from bot.sources.oci.models import canonical_host


@dataclass(frozen=True)
class Credential:
    """A user name and password for one registry, from the docker config."""

    username: str
    password: str

    def header(self) -> str:
        """The `Authorization: Basic …` value."""
        raw = f"{self.username}:{self.password}".encode()
        return "Basic " + base64.b64encode(raw).decode("ascii")


def docker_config_path(environ: Mapping[str, str]) -> Path:
    """`$DOCKER_CONFIG/config.json`, else `~/.docker/config.json` (HOME from `environ`)."""
    if environ.get("DOCKER_CONFIG"):
        return Path(environ["DOCKER_CONFIG"]) / "config.json"
    return Path(environ.get("HOME") or Path.home()) / ".docker" / "config.json"


def load_docker_credentials(environ: Mapping[str, str]) -> dict[str, Credential]:
    """Credentials by registry host from the docker config's `auths` (none when no file)."""
    path = docker_config_path(environ)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from error
    except ValueError as error:
        raise ConfigError(f"{path}: not valid JSON; fix or remove it") from error
    auths = data.get("auths") if isinstance(data, dict) else None
    if not isinstance(auths, dict):
        return {}
    credentials: dict[str, Credential] = {}
    for key, entry in auths.items():
        if not isinstance(entry, dict):
            continue
        credential = _credential(entry, source=f"{path} auths[{key!r}]")
        if credential is None:
            continue
        address = str(key) if "://" in str(key) else f"https://{key}"
        url = httpx.URL(address)
        host = f"{url.host}:{url.port}" if url.port else url.host
        credentials[canonical_host(host)] = credential
    return credentials


def _credential(entry: Mapping[str, Any], *, source: str) -> Credential | None:
    auth = entry.get("auth")
    if isinstance(auth, str) and auth:
        try:
            username, colon, password = (
                base64.b64decode(auth, validate=True).decode().partition(":")
            )
        except (binascii.Error, UnicodeDecodeError) as error:
            raise ConfigError(f"{source}: auth is not base64 of user:password") from error
        if not colon:
            raise ConfigError(f"{source}: auth is not base64 of user:password")
    else:
        username, password = str(entry.get("username") or ""), str(entry.get("password") or "")
    if not username or not password:
        return None
    register_secret(password)
    register_secret(auth if isinstance(auth, str) else None)
    return Credential(username, password)
