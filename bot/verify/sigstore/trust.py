"""The sigstore trusted root: Rekor logs, Fulcio CAs, CT logs and RFC 3161 timestamp authorities.

Read from sigstore's standard `trusted_root.json` format.  The pinned public-good copy is
`bot/data/sigstore-trusted-root.json`; `<state_dir>/trust/sigstore-trusted-root.json` replaces it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bot import DATA_DIR
from bot.errors import ConfigError
from bot.verify.sigstore.keys import PublicKey

TRUSTED_ROOT_FILE = DATA_DIR / "sigstore-trusted-root.json"
TRUST_OVERRIDE_NAME = "sigstore-trusted-root.json"


@dataclass(frozen=True)
class Validity:
    """A `validFor` period of a trusted-root entry (open end when `until` is None)."""

    start: datetime
    until: datetime | None = None

    def covers(self, when: datetime) -> bool:
        """Whether `when` falls inside the period (both ends included)."""
        return self.start <= when and (self.until is None or when <= self.until)


@dataclass(frozen=True)
class TransparencyLog:
    """A transparency log (Rekor) or certificate-transparency log the root trusts."""

    log_id: bytes
    public_key: PublicKey
    validity: Validity
    origin: str = ""


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA or a timestamp authority: its chain (leaf-most first) and validity."""

    certificates: tuple[x509.Certificate, ...]
    validity: Validity


@dataclass(frozen=True)
class TrustedRoot:
    """The sigstore trust material: Rekor logs, Fulcio CAs, CT logs and timestamp authorities."""

    tlogs: tuple[TransparencyLog, ...]
    authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[TransparencyLog, ...]
    timestamp_authorities: tuple[CertificateAuthority, ...] = ()

    def tlog(self, log_id: bytes) -> TransparencyLog | None:
        """The transparency log with `log_id`, if trusted."""
        return next((log for log in self.tlogs if log.log_id == log_id), None)


def _root_time(value: object, source: str) -> datetime:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: validFor timestamps must be strings")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as error:
        raise ConfigError(f"{source}: {value!r} is not an ISO timestamp") from error
    if parsed.tzinfo is None:
        raise ConfigError(f"{source}: {value!r} has no time zone")
    return parsed


def _validity(entry: Mapping[str, Any], source: str) -> Validity:
    period = entry.get("validFor") or {}
    end = period.get("end")
    return Validity(
        _root_time(period.get("start", "1970-01-01T00:00:00Z"), source),
        _root_time(end, source) if end is not None else None,
    )


def _logs(entries: object, source: str) -> tuple[TransparencyLog, ...]:
    logs = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            key = serialization.load_der_public_key(
                base64.b64decode(entry["publicKey"]["rawBytes"])
            )
            log_id = base64.b64decode(entry["logId"]["keyId"])
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{source}: a log entry has no usable key or logId") from error
        if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
            base_url = entry.get("baseUrl")
            origin = urlsplit(base_url).netloc if isinstance(base_url, str) else ""
            logs.append(TransparencyLog(log_id, key, _validity(entry["publicKey"], source), origin))
    return tuple(logs)


def _authorities(entries: object, source: str, what: str) -> tuple[CertificateAuthority, ...]:
    authorities = []
    for entry in entries if isinstance(entries, list) else []:
        try:
            chain = tuple(
                x509.load_der_x509_certificate(base64.b64decode(item["rawBytes"]))
                for item in entry["certChain"]["certificates"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{source}: a {what} has an unusable chain") from error
        if not chain:
            raise ConfigError(f"{source}: a {what} has an empty chain")
        authorities.append(CertificateAuthority(chain, _validity(entry, source)))
    return tuple(authorities)


def parse_trusted_root(data: object, *, source: str) -> TrustedRoot:
    """Parse a sigstore `trusted_root.json` document (keys of unknown types are left out)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a trusted root must be a JSON object")
    root = TrustedRoot(
        _logs(data.get("tlogs"), source),
        _authorities(data.get("certificateAuthorities"), source, "certificate authority"),
        _logs(data.get("ctlogs"), source),
        _authorities(data.get("timestampAuthorities"), source, "timestamp authority"),
    )
    if not (root.tlogs and root.authorities and root.ctlogs):
        raise ConfigError(f"{source}: a trusted root needs tlogs, certificateAuthorities, ctlogs")
    return root


def load_trusted_root(path: Path = TRUSTED_ROOT_FILE) -> TrustedRoot:
    """Read and parse a trusted root file."""
    try:
        data = json.loads(path.read_bytes())  # json detects UTF-8 (RFC 8259), UTF-16 or UTF-32
    except OSError as error:
        raise ConfigError(
            f"{path}: cannot read the sigstore trusted root ({error.strerror})"
        ) from error
    except ValueError as error:
        raise ConfigError(f"{path}: the sigstore trusted root is not valid JSON") from error
    return parse_trusted_root(data, source=str(path))


def trusted_root_for(state_dir: Path) -> TrustedRoot:
    """`<state_dir>/trust/sigstore-trusted-root.json` if the operator put one there, else pinned."""
    override = state_dir / "trust" / TRUST_OVERRIDE_NAME
    return load_trusted_root(override if override.is_file() else TRUSTED_ROOT_FILE)
