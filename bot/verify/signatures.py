"""npm registry signatures: ECDSA P-256 / SHA-256 over `name@version:integrity`, fail closed.

A registry signs each version's `dist.integrity`; the signature (base64 DER) sits in
`dist.signatures` with the id of the key that made it, and the registry serves its public keys
(base64 SPKI) at `/-/npm/v1/keys`.  The bot ships pinned keys for the public registry in
`bot/data/npm-registry-keys.json` (same format as `/-/npm/v1/keys`, one entry per registry URL):
for a pinned registry only pinned keys are trusted, and a served key that contradicts a pinned
one is an error; keys the registry serves that are not pinned are reported, not trusted, until
the pinned file is refreshed from `/-/npm/v1/keys`.  Other registries are trusted for their own
keys, as npm does.  A file `<state_dir>/trust/npm-registry-keys.json` replaces the shipped one.

npm's rule for expiry: a key with `expires` only verifies versions published before that time.

Policy per registry (`verify.signatures` in the repo config): `required` (keys and a valid
signature on every pinned version), `if-published` (when the registry serves keys, every version
must carry a valid signature; when it serves none: "not verifiable") or `off`.  Unset, it is
`required` for the public registry and `if-published` for any other.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from bot import DATA_DIR
from bot.config import Policy
from bot.errors import ConfigError, InvalidRemoteData, VerificationFailed
from bot.sources.http import HttpSource, host_of
from bot.sources.npm.models import PackageVersion
from bot.sources.npm.registry import unexpected_answer
from bot.sources.npm.settings import PUBLIC_REGISTRY, NpmSettings

log = logging.getLogger(__name__)

PINNED_KEYS_FILE = DATA_DIR / "npm-registry-keys.json"
TRUST_OVERRIDE_NAME = "npm-registry-keys.json"
KEYS_PATH = "-/npm/v1/keys"
KEYS_LIMIT = 1024 * 1024
SUPPORTED_SCHEME = "ecdsa-sha2-nistp256"

SignatureStatus = Literal["verified", "not verifiable", "off"]
KeySource = Literal["pinned", "registry", "none"]


def _timestamp(value: object, *, source: str) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed
    raise InvalidRemoteData(f"{source}: key expiry {value!r} is not an ISO timestamp with zone")


@dataclass(frozen=True)
class RegistryKey:
    """One registry signing key: its id, base64 SPKI bytes and optional expiry."""

    keyid: str
    key: str
    expires: datetime | None = None

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        """The key as a `cryptography` P-256 public key (validated by `parse_keys`)."""
        loaded = load_der_public_key(base64.b64decode(self.key))
        if not isinstance(loaded, ec.EllipticCurvePublicKey):
            raise InvalidRemoteData(f"registry key {self.keyid} is not an EC key")
        return loaded

    def valid_at(self, when: datetime | None) -> bool:
        """npm's rule: a key with an expiry only covers versions published before it."""
        if self.expires is None:
            return True
        return when is not None and when < self.expires


def parse_keys(data: object, *, source: str) -> tuple[RegistryKey, ...]:
    """Validate a `/-/npm/v1/keys` document; keys of unsupported schemes are left out."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidRemoteData(f'{source}: expected {{"keys": [...]}}')
    keys: list[RegistryKey] = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise InvalidRemoteData(f"{source}: a key entry is not an object")
        keyid, key = entry.get("keyid"), entry.get("key")
        if not isinstance(keyid, str) or not keyid or not isinstance(key, str):
            raise InvalidRemoteData(f"{source}: a key entry has no keyid or key")
        if entry.get("scheme", SUPPORTED_SCHEME) != SUPPORTED_SCHEME:
            log.warning("skipping key with unsupported scheme", extra={"keyid": keyid})
            continue
        try:
            loaded = load_der_public_key(base64.b64decode(key, validate=True))
        except (ValueError, binascii.Error) as error:
            raise InvalidRemoteData(f"{source}: key {keyid} is not base64 SPKI") from error
        if not isinstance(loaded, ec.EllipticCurvePublicKey) or loaded.curve.name != "secp256r1":
            raise InvalidRemoteData(f"{source}: key {keyid} is not an ECDSA P-256 key")
        keys.append(RegistryKey(keyid, key, _timestamp(entry.get("expires"), source=source)))
    return tuple(keys)


def load_pinned_keys(path: Path = PINNED_KEYS_FILE) -> dict[str, tuple[RegistryKey, ...]]:
    """Pinned keys per registry URL from a JSON file `{registry: {"keys": [...]}}`."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{path}: cannot read pinned registry keys ({error.strerror})") from error
    except ValueError as error:
        raise ConfigError(f"{path}: pinned registry keys are not valid JSON") from error
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected an object mapping registry URLs to key sets")
    try:
        return {
            (registry if registry.endswith("/") else registry + "/"): parse_keys(
                document, source=f"{path} [{registry}]"
            )
            for registry, document in data.items()
        }
    except InvalidRemoteData as error:
        raise ConfigError(error.message) from error


def pinned_keys_for(state_dir: Path) -> dict[str, tuple[RegistryKey, ...]]:
    """`<state_dir>/trust/npm-registry-keys.json` if the operator put one there, else shipped."""
    override = state_dir / "trust" / TRUST_OVERRIDE_NAME
    return load_pinned_keys(override if override.is_file() else PINNED_KEYS_FILE)


def default_policy(registry: str) -> Policy:
    """`required` for the public npm registry, `if-published` for any other."""
    return "required" if registry == PUBLIC_REGISTRY else "if-published"


def effective_policy(configured: Policy | None, registry: str) -> Policy:
    """The configured policy, or the registry's default when none is configured."""
    return configured if configured is not None else default_policy(registry)


@dataclass(frozen=True)
class TrustedKeys:
    """The keys trusted for one registry, where they came from, and what the registry serves."""

    registry: str
    keys: tuple[RegistryKey, ...]
    source: KeySource
    registry_serves_keys: bool
    unpinned_keyids: tuple[str, ...] = ()

    def find(self, keyid: str) -> RegistryKey | None:
        """The trusted key with `keyid`, if any."""
        return next((key for key in self.keys if key.keyid == keyid), None)


def trusted_keys(
    registry: str,
    *,
    pinned: Mapping[str, tuple[RegistryKey, ...]],
    served: tuple[RegistryKey, ...] | None,
) -> TrustedKeys:
    """Combine pinned and served keys: pinned registries trust only pinned keys (pure)."""
    serves = bool(served)
    if registry not in pinned:
        return TrustedKeys(registry, served or (), "registry" if serves else "none", serves)
    keys: list[RegistryKey] = []
    served_by_id = {key.keyid: key for key in served or ()}
    for key in pinned[registry]:
        other = served_by_id.get(key.keyid)
        if other is not None and other.key != key.key:
            raise VerificationFailed(
                f"{host_of(registry)} serves key {key.keyid} with bytes that differ from the "
                "pinned key; something between the bot and the registry is rewriting keys",
                registry=host_of(registry),
                keyid=key.keyid,
            )
        expiries = [
            when
            for when in (key.expires, other.expires if other is not None else None)
            if when is not None
        ]
        keys.append(RegistryKey(key.keyid, key.key, min(expiries) if expiries else None))
    unpinned = tuple(sorted(set(served_by_id) - {key.keyid for key in keys}))
    return TrustedKeys(registry, tuple(keys), "pinned", serves, unpinned)


class RegistryKeyring:
    """Fetches each registry's `/-/npm/v1/keys` once and combines it with the pinned keys."""

    def __init__(
        self,
        http: HttpSource,
        npm_settings: NpmSettings,
        pinned: Mapping[str, tuple[RegistryKey, ...]],
    ) -> None:
        self.http = http
        self.npm_settings = npm_settings
        self.pinned = pinned
        self._cache: dict[str, TrustedKeys] = {}

    def keys(self, registry: str) -> TrustedKeys:
        """The trusted keys of `registry` (a registry base URL ending in `/`)."""
        if registry not in self._cache:
            self._cache[registry] = trusted_keys(
                registry, pinned=self.pinned, served=self.fetch(registry)
            )
        return self._cache[registry]

    def fetch(self, registry: str) -> tuple[RegistryKey, ...] | None:
        """What the registry serves at `/-/npm/v1/keys`; `None` when it has no such endpoint (404,
        405; a 5xx is retried, then `ServiceUnavailable`)."""
        url = registry + KEYS_PATH
        headers = {"Accept": "application/json", **self.npm_settings.auth_headers(url)}
        body = self.http.fetch("GET", url, headers=headers, limit=KEYS_LIMIT)
        if body.status_code in (404, 405):
            return None
        if body.status_code != 200:
            raise unexpected_answer(url, KEYS_PATH, body.status_code)
        return parse_keys(body.json(), source=f"{host_of(url)}/{KEYS_PATH}")


def signed_message(name: str, version: str, integrity: str) -> bytes:
    """What the registry signs for a version: `name@version:integrity`."""
    return f"{name}@{version}:{integrity}".encode()


@dataclass(frozen=True)
class SignatureCheck:
    """The outcome for one package version: which policy, which keys, and the verdict."""

    name: str
    version: str
    registry: str
    policy: Policy
    status: SignatureStatus
    key_source: KeySource
    keyids: tuple[str, ...] = ()

    @property
    def verified(self) -> bool:
        """Whether every signature of the version verified with a trusted key."""
        return self.status == "verified"

    def as_evidence(self) -> dict[str, Any]:
        """The check as audit evidence."""
        return {
            "name": self.name,
            "version": self.version,
            "registry": host_of(self.registry),
            "policy": self.policy,
            "status": self.status,
            "verified": self.verified,
            "key_source": self.key_source,
            "keyids": list(self.keyids),
        }


def verify_signatures(
    manifest: PackageVersion, keys: TrustedKeys, policy: Policy
) -> SignatureCheck:
    """Check every `dist.signatures` entry of `manifest` under `policy` (pure)."""
    label = f"{manifest.name}@{manifest.version}"
    host = host_of(keys.registry)

    def fail(reason: str, **fields: Any) -> VerificationFailed:
        return VerificationFailed(
            f"registry signature check failed for {label} from {host} (policy {policy}): "
            f"{reason}; do not bypass — keep the known-good pins",
            package=label,
            registry=host,
            policy=policy,
            **fields,
        )

    def result(status: SignatureStatus, keyids: tuple[str, ...] = ()) -> SignatureCheck:
        return SignatureCheck(
            manifest.name, manifest.version, keys.registry, policy, status, keys.source, keyids
        )

    if policy == "off":
        return result("off")
    if policy == "if-published" and not keys.registry_serves_keys:
        return result("not verifiable")
    if not keys.keys:
        raise fail(f"the registry publishes no signing keys at /{KEYS_PATH} and none are pinned")
    if not manifest.dist.signatures:
        raise fail("the version carries no dist.signatures (stripped or never signed)")
    message = signed_message(manifest.name, manifest.version, manifest.dist.integrity)
    for signature in manifest.dist.signatures:
        key = keys.find(signature.keyid)
        if key is None:
            hint = (
                "; the registry serves it but it is not pinned: refresh the pinned keys from "
                f"/{KEYS_PATH}"
                if signature.keyid in keys.unpinned_keyids
                else ""
            )
            raise fail(f"signed with unknown key {signature.keyid}{hint}", keyid=signature.keyid)
        if key.expires is not None and not key.valid_at(manifest.published_at):
            published = manifest.published_at.isoformat() if manifest.published_at else "unknown"
            raise fail(
                f"key {key.keyid} expired {key.expires.isoformat()} "
                f"before the version was published ({published})",
                keyid=key.keyid,
            )
        try:
            der = base64.b64decode(signature.sig, validate=True)
            key.public_key.verify(der, message, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, binascii.Error, ValueError) as error:
            raise fail(
                f"the signature by {key.keyid} does not match name@version:integrity",
                keyid=key.keyid,
            ) from error
    return result("verified", tuple(signature.keyid for signature in manifest.dist.signatures))
