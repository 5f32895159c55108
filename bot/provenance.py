"""npm provenance: verify the sigstore bundles a version announces, offline, and fail closed.

A version that carries `dist.attestations` has two bundles at that URL: the SLSA provenance
(signed with a short-lived Fulcio certificate issued to the CI workflow that built it) and the
npm publish attestation (signed with the registry's own key).  Both wrap an in-toto statement
in a DSSE envelope whose subject must be the package's purl (`pkg:npm/%40img/sharp-linux-x64@…`)
with the tarball's sha512.

pip `sigstore` cannot verify these bundles: npm records them in Rekor as `intoto` 0.0.2 entries,
which sigstore-python rejects, and it does not verify key-signed bundles (the publish
attestation) at all.  So the checks are written here with `cryptography`, against a sigstore
trusted root in the standard `trusted_root.json` format (pinned copy of the public-good root in
`bot/data/sigstore-trusted-root.json`; `<state_dir>/trust/sigstore-trusted-root.json` replaces
it).  For each bundle:
- the transparency-log entry: its signed entry timestamp (inclusion promise) by a trusted log
  key (this is the signing time), its inclusion proof and signed checkpoint when present, and a
  body that records this envelope's payload hash, signature and signer;
- the certificate: chains to a trusted Fulcio CA at the signing time, code-signing usage, an
  SCT from a trusted CT log, and the identity policy (issuer GitHub Actions, an allowed source
  repository, a tag ref);
- the DSSE signature over the envelope, and the statement's subject.
Bundles timestamped only by an RFC 3161 authority (no inclusion promise) are refused.

Policy (`verify.provenance`): `required` (every pinned version must have verified provenance),
`if-published` (verify where announced) or `off`.  Under both `required` and `if-published` a
version that lost the provenance its predecessor had is blocked ("no downgrade").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bot.config import Policy
from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable, VerificationFailed
from bot.signatures import RegistryKey, TrustedKeys
from bot.sources.http import HttpSource, host_of
from bot.sources.npm import NpmSettings, PackageVersion

TRUSTED_ROOT_FILE = Path(__file__).resolve().parent / "data" / "sigstore-trusted-root.json"
TRUST_OVERRIDE_NAME = "sigstore-trusted-root.json"
ATTESTATIONS_LIMIT = 8 * 1024 * 1024

SLSA_PREDICATES = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2")
PUBLISH_PREDICATE = "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"
GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

_FULCIO = "1.3.6.1.4.1.57264.1."
OID_ISSUER_V1 = ObjectIdentifier(_FULCIO + "1")
OID_WORKFLOW_REPOSITORY_V1 = ObjectIdentifier(_FULCIO + "5")
OID_WORKFLOW_REF_V1 = ObjectIdentifier(_FULCIO + "6")
OID_ISSUER = ObjectIdentifier(_FULCIO + "8")
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier(_FULCIO + "12")
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier(_FULCIO + "14")

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey
ProvenanceStatus = Literal["verified", "absent", "off"]
PublishStatus = Literal["verified", "absent", "not verifiable", "off"]


def package_purl(name: str, version: str) -> str:
    """The package URL npm puts in attestation subjects: `pkg:npm/%40scope/name@version`."""
    return f"pkg:npm/{quote(name, safe='/')}@{version}"


def integrity_hex(integrity: str) -> str:
    """An `sha512-<base64>` SRI string as lowercase hex (attestation subjects use hex)."""
    return base64.b64decode(integrity.removeprefix("sha512-")).hex()


def _fail(label: str, reason: str, **fields: Any) -> VerificationFailed:
    return VerificationFailed(
        f"provenance check failed for {label}: {reason}; do not bypass — keep the known-good pins",
        package=label,
        **fields,
    )


def _verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
    """ECDSA (SHA-256, or SHA-384 on P-384) or Ed25519 verification, as a boolean."""
    try:
        if isinstance(key, ec.EllipticCurvePublicKey):
            algorithm: hashes.HashAlgorithm = (
                hashes.SHA384() if key.curve.key_size == 384 else hashes.SHA256()
            )
            key.verify(signature, data, ec.ECDSA(algorithm))
        else:
            key.verify(signature, data)
    except InvalidSignature:
        return False
    return True


def _der(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# --- trusted root ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Validity:
    """A `validFor` period of a trusted-root entry (open end when `until` is None)."""

    start: datetime
    until: datetime | None = None

    def covers(self, when: datetime) -> bool:
        """Whether `when` falls inside the period."""
        return self.start <= when and (self.until is None or when <= self.until)


@dataclass(frozen=True)
class TransparencyLog:
    """A transparency log (Rekor) or certificate-transparency log the root trusts."""

    log_id: bytes
    public_key: PublicKey
    validity: Validity


@dataclass(frozen=True)
class CertificateAuthority:
    """A Fulcio CA: its chain (leaf-most first) and when it issued certificates."""

    certificates: tuple[x509.Certificate, ...]
    validity: Validity


@dataclass(frozen=True)
class TrustedRoot:
    """The sigstore trust material: Rekor logs, Fulcio CAs and CT logs."""

    tlogs: tuple[TransparencyLog, ...]
    authorities: tuple[CertificateAuthority, ...]
    ctlogs: tuple[TransparencyLog, ...]

    def tlog(self, log_id: bytes) -> TransparencyLog | None:
        """The transparency log with `log_id` (sha256 of its key), if trusted."""
        return next((log for log in self.tlogs if log.log_id == log_id), None)


def _root_time(value: object, source: str) -> datetime:
    if not isinstance(value, str):
        raise ConfigError(f"{source}: validFor timestamps must be strings")
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as error:
        raise ConfigError(f"{source}: {value!r} is not an ISO timestamp") from error


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
            logs.append(TransparencyLog(log_id, key, _validity(entry["publicKey"], source)))
    return tuple(logs)


def parse_trusted_root(data: object, *, source: str) -> TrustedRoot:
    """Parse a sigstore `trusted_root.json` document (keys of unknown types are left out)."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: a trusted root must be a JSON object")
    authorities = []
    for entry in data.get("certificateAuthorities") or []:
        try:
            chain = tuple(
                x509.load_der_x509_certificate(base64.b64decode(item["rawBytes"]))
                for item in entry["certChain"]["certificates"]
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ConfigError(f"{source}: a certificate authority has an unusable chain") from error
        authorities.append(CertificateAuthority(chain, _validity(entry, source)))
    root = TrustedRoot(
        _logs(data.get("tlogs"), source), tuple(authorities), _logs(data.get("ctlogs"), source)
    )
    if not (root.tlogs and root.authorities and root.ctlogs):
        raise ConfigError(f"{source}: a trusted root needs tlogs, certificateAuthorities, ctlogs")
    return root


def load_trusted_root(path: Path = TRUSTED_ROOT_FILE) -> TrustedRoot:
    """Read and parse a trusted root file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
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


# --- bundles --------------------------------------------------------------------------------


@dataclass(frozen=True)
class InclusionProof:
    """A Merkle inclusion proof of a log entry and the checkpoint it leads to."""

    log_index: int
    root_hash: bytes
    tree_size: int
    hashes: tuple[bytes, ...]
    checkpoint: str


@dataclass(frozen=True)
class TlogEntry:
    """One transparency-log entry recorded in a bundle."""

    log_index: int
    log_id: bytes
    kind: str
    version: str
    integrated_time: int
    body: bytes
    promise: bytes | None
    proof: InclusionProof | None


@dataclass(frozen=True)
class Envelope:
    """A DSSE envelope: payload, its type, and the raw signatures."""

    payload: bytes
    payload_type: str
    signatures: tuple[bytes, ...]

    def pae(self) -> bytes:
        """DSSE pre-authentication encoding: what the signatures cover."""
        kind = self.payload_type.encode()
        return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(self.payload), self.payload)


@dataclass(frozen=True)
class Bundle:
    """A sigstore bundle holding a DSSE envelope, signed by a certificate or a named key."""

    media_type: str
    envelope: Envelope
    certificate: x509.Certificate | None
    key_hint: str | None
    tlog_entries: tuple[TlogEntry, ...]


@dataclass(frozen=True)
class Attestation:
    """One entry of the registry's attestations document."""

    predicate_type: str
    bundle: Mapping[str, Any]


def _b64(value: object, what: str, source: str) -> bytes:
    if not isinstance(value, str):
        raise InvalidRemoteData(f"{source}: bundle field {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise InvalidRemoteData(f"{source}: bundle field {what} is not base64") from error


def _int(value: object, what: str, source: str) -> int:
    if isinstance(value, int) or (isinstance(value, str) and value.isdigit()):
        return int(value)
    raise InvalidRemoteData(f"{source}: bundle field {what} is not an integer")


def _object(value: object, what: str, source: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise InvalidRemoteData(f"{source}: bundle field {what} is missing")
    return value


def _tlog_entry(raw: object, source: str) -> TlogEntry:
    entry = _object(raw, "tlogEntries[]", source)
    kind_version = _object(entry.get("kindVersion"), "kindVersion", source)
    promise = entry.get("inclusionPromise")
    proof_data = entry.get("inclusionProof")
    proof = None
    if isinstance(proof_data, dict):
        checkpoint = _object(proof_data.get("checkpoint"), "checkpoint", source).get("envelope")
        if not isinstance(checkpoint, str):
            raise InvalidRemoteData(f"{source}: inclusion proof has no checkpoint")
        proof = InclusionProof(
            log_index=_int(proof_data.get("logIndex"), "inclusionProof.logIndex", source),
            root_hash=_b64(proof_data.get("rootHash"), "rootHash", source),
            tree_size=_int(proof_data.get("treeSize"), "treeSize", source),
            hashes=tuple(
                _b64(item, "inclusionProof.hashes", source)
                for item in proof_data.get("hashes") or []
            ),
            checkpoint=checkpoint,
        )
    return TlogEntry(
        log_index=_int(entry.get("logIndex"), "logIndex", source),
        log_id=_b64(_object(entry.get("logId"), "logId", source).get("keyId"), "logId", source),
        kind=str(kind_version.get("kind")),
        version=str(kind_version.get("version")),
        integrated_time=_int(entry.get("integratedTime"), "integratedTime", source),
        body=_b64(entry.get("canonicalizedBody"), "canonicalizedBody", source),
        promise=_b64(promise.get("signedEntryTimestamp"), "signedEntryTimestamp", source)
        if isinstance(promise, dict)
        else None,
        proof=proof,
    )


def parse_bundle(data: object, *, source: str) -> Bundle:
    """Validate a sigstore bundle (media types v0.1 to v0.3) holding a DSSE envelope."""
    bundle = _object(data, "bundle", source)
    media_type = bundle.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith(
        "application/vnd.dev.sigstore.bundle"
    ):
        raise InvalidRemoteData(f"{source}: not a sigstore bundle (mediaType {media_type!r})")
    material = _object(bundle.get("verificationMaterial"), "verificationMaterial", source)
    certificate = None
    if isinstance(material.get("certificate"), dict):
        der = _b64(material["certificate"].get("rawBytes"), "certificate", source)
    elif isinstance(material.get("x509CertificateChain"), dict):
        chain = material["x509CertificateChain"].get("certificates") or [{}]
        first = _object(chain[0], "certificates[0]", source)
        der = _b64(first.get("rawBytes"), "certificate", source)
    else:
        der = b""
    if der:
        try:
            certificate = x509.load_der_x509_certificate(der)
        except ValueError as error:
            raise InvalidRemoteData(f"{source}: bundle certificate is not DER X.509") from error
    public_key = material.get("publicKey")
    key_hint = public_key.get("hint") if isinstance(public_key, dict) else None
    envelope_data = _object(bundle.get("dsseEnvelope"), "dsseEnvelope", source)
    envelope = Envelope(
        payload=_b64(envelope_data.get("payload"), "payload", source),
        payload_type=str(envelope_data.get("payloadType")),
        signatures=tuple(
            _b64(_object(item, "signatures[]", source).get("sig"), "sig", source)
            for item in envelope_data.get("signatures") or []
        ),
    )
    return Bundle(
        media_type=media_type,
        envelope=envelope,
        certificate=certificate,
        key_hint=key_hint if isinstance(key_hint, str) else None,
        tlog_entries=tuple(
            _tlog_entry(item, source) for item in material.get("tlogEntries") or []
        ),
    )


def parse_attestations(data: object, *, source: str) -> tuple[Attestation, ...]:
    """Validate the registry's `{"attestations": [{"predicateType", "bundle"}]}` document."""
    entries = data.get("attestations") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidRemoteData(f"{source}: expected {{\"attestations\": [...]}}")
    attestations = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("predicateType"), str):
            raise InvalidRemoteData(f"{source}: an attestation has no predicateType")
        attestations.append(
            Attestation(entry["predicateType"], _object(entry.get("bundle"), "bundle", source))
        )
    return tuple(attestations)


def fetch_attestations(
    url: str, http: HttpSource, npm_settings: NpmSettings
) -> tuple[Attestation, ...] | None:
    """The attestations at `url` (`dist.attestations.url`); `None` when the registry has none."""
    if not url.startswith(("https://", "http://")):
        raise InvalidRemoteData(f"dist.attestations.url {url!r} is not an http(s) URL")
    headers = {"Accept": "application/json", **npm_settings.auth_headers(url)}
    body = http.fetch("GET", url, headers=headers, limit=ATTESTATIONS_LIMIT)
    if body.status_code == 404:
        return None
    if body.status_code != 200:
        raise ServiceUnavailable(
            f"{host_of(url)} answered HTTP {body.status_code} for attestations; try again later"
        )
    return parse_attestations(body.json(), source=f"{host_of(url)} attestations")


# --- transparency log -------------------------------------------------------------------------


def _leaf_hash(body: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + body).digest()


def _node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def root_from_inclusion_proof(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes]
) -> bytes | None:
    """RFC 9162 §2.1.3.2: the tree root a proof leads to, or None if the proof is malformed."""
    if index >= size:
        return None
    position, last = index, size - 1
    result = leaf
    for sibling in proof:
        if last == 0:
            return None
        if position % 2 == 1 or position == last:
            result = _node_hash(sibling, result)
            while position % 2 == 0 and position != 0:
                position >>= 1
                last >>= 1
        else:
            result = _node_hash(result, sibling)
        position >>= 1
        last >>= 1
    return result if last == 0 else None


def _verify_checkpoint(proof: InclusionProof, log: TransparencyLog) -> bool:
    """A signed note `origin\\nsize\\nroot\\n…\\n\\n— name base64(keyhint+sig)` from `log`."""
    note, separator, signature_block = proof.checkpoint.partition("\n\n")
    if not separator:
        return False
    lines = note.split("\n")
    if len(lines) < 3 or lines[1] != str(proof.tree_size):
        return False
    try:
        if base64.b64decode(lines[2], validate=True) != proof.root_hash:
            return False
    except binascii.Error:
        return False
    hint = hashlib.sha256(_der(log.public_key)).digest()[:4]
    for line in signature_block.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if raw[:4] == hint and _verify_signature(log.public_key, raw[4:], (note + "\n").encode()):
            return True
    return False


def verify_tlog_entry(entry: TlogEntry, root: TrustedRoot, label: str) -> datetime:
    """Check an entry's promise, proof and checkpoint; return its (now proven) integrated time."""
    log = root.tlog(entry.log_id)
    if log is None:
        raise _fail(label, "the bundle's transparency log is not in the trusted root")
    if entry.promise is None:
        raise _fail(label, "the log entry has no inclusion promise, so no trusted signing time")
    signed = json.dumps(
        {
            "body": base64.b64encode(entry.body).decode(),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    if not _verify_signature(log.public_key, entry.promise, signed):
        raise _fail(label, "the log's signed entry timestamp does not verify")
    when = datetime.fromtimestamp(entry.integrated_time, UTC)
    if not log.validity.covers(when):
        raise _fail(label, "the log key was not valid at the entry's integrated time")
    proof = entry.proof
    if proof is not None:
        computed = root_from_inclusion_proof(
            proof.log_index, proof.tree_size, _leaf_hash(entry.body), proof.hashes
        )
        if computed is None or computed != proof.root_hash:
            raise _fail(label, "the inclusion proof does not lead to the recorded root")
        if not _verify_checkpoint(proof, log):
            raise _fail(label, "the log checkpoint is not signed by the log or names another root")
    return when


def _same_signer(pem: bytes, signer: x509.Certificate | PublicKey) -> bool:
    try:
        if isinstance(signer, x509.Certificate):
            return x509.load_pem_x509_certificate(pem) == signer
        return _der(signer) == _der_of_pem_key(pem)
    except ValueError:
        return False


def _der_of_pem_key(pem: bytes) -> bytes:
    key = serialization.load_pem_public_key(pem)
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def check_entry_body(
    entry: TlogEntry, envelope: Envelope, signer: x509.Certificate | PublicKey, label: str
) -> None:
    """The log entry must record this envelope's payload hash, signatures and signer."""
    try:
        body = json.loads(entry.body)
        if (body.get("kind"), body.get("apiVersion")) != (entry.kind, entry.version):
            raise _fail(label, "the log entry body disagrees with its kind and version")
        payload_hash = hashlib.sha256(envelope.payload).hexdigest()
        if (entry.kind, entry.version) == ("intoto", "0.0.2"):
            content = body["spec"]["content"]
            recorded_hash = content["payloadHash"]
            recorded = [
                (
                    base64.b64decode(base64.b64decode(item["sig"])),
                    base64.b64decode(item["publicKey"]),
                )
                for item in content["envelope"]["signatures"]
            ]
            if content["envelope"].get("payloadType") != envelope.payload_type:
                raise _fail(label, "the log entry records another payload type")
        elif (entry.kind, entry.version) == ("dsse", "0.0.1"):
            recorded_hash = body["spec"]["payloadHash"]
            recorded = [
                (base64.b64decode(item["signature"]), base64.b64decode(item["verifier"]))
                for item in body["spec"]["signatures"]
            ]
        else:
            raise _fail(label, f"unsupported log entry type {entry.kind}/{entry.version}")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise _fail(label, "the log entry body is malformed") from error
    if recorded_hash.get("algorithm") != "sha256" or recorded_hash.get("value") != payload_hash:
        raise _fail(label, "the log entry records another payload hash")
    if sorted(sig for sig, _ in recorded) != sorted(envelope.signatures) or not all(
        _same_signer(pem, signer) for _, pem in recorded
    ):
        raise _fail(label, "the log entry records other signatures or another signer")


# --- certificates -----------------------------------------------------------------------------


def _utf8_extension(
    certificate: x509.Certificate, oid: ObjectIdentifier, *, der: bool
) -> str | None:
    """A Fulcio extension's text: DER UTF8String (v2 OIDs) or raw bytes (v1 OIDs)."""
    try:
        value = certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    if der:
        if len(raw) < 2 or raw[0] != 0x0C:
            return None
        length, offset = raw[1], 2
        if length & 0x80:
            count = length & 0x7F
            length, offset = int.from_bytes(raw[2 : 2 + count], "big"), 2 + count
        raw = raw[offset : offset + length]
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


@dataclass(frozen=True)
class Identity:
    """Who a Fulcio certificate was issued to: OIDC issuer, source repository and ref."""

    issuer: str | None
    source_repository: str | None
    source_ref: str | None
    subject: str | None


def certificate_identity(certificate: x509.Certificate) -> Identity:
    """The signer identity from Fulcio's extensions (v2 OIDs, falling back to v1)."""
    repository = _utf8_extension(certificate, OID_SOURCE_REPOSITORY_URI, der=True)
    if repository is None:
        legacy = _utf8_extension(certificate, OID_WORKFLOW_REPOSITORY_V1, der=False)
        repository = f"https://github.com/{legacy}" if legacy else None
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subject = next(iter(names.get_values_for_type(x509.UniformResourceIdentifier)), None)
    except x509.ExtensionNotFound:
        subject = None
    return Identity(
        issuer=_utf8_extension(certificate, OID_ISSUER, der=True)
        or _utf8_extension(certificate, OID_ISSUER_V1, der=False),
        source_repository=repository,
        source_ref=_utf8_extension(certificate, OID_SOURCE_REPOSITORY_REF, der=True)
        or _utf8_extension(certificate, OID_WORKFLOW_REF_V1, der=False),
        subject=subject,
    )


@dataclass(frozen=True)
class IdentityPolicy:
    """Which CI identities may sign provenance: issuer, `owner/name` repositories, ref prefix."""

    repositories: tuple[str, ...]
    issuer: str = GITHUB_ACTIONS_ISSUER
    ref_prefix: str = "refs/tags/"

    def problems(self, identity: Identity) -> list[str]:
        """Why `identity` does not satisfy the policy (empty when it does)."""
        found: list[str] = []
        if identity.issuer != self.issuer:
            found.append(f"issuer {identity.issuer!r} is not {self.issuer}")
        allowed = {f"https://github.com/{name}".lower() for name in self.repositories}
        if (identity.source_repository or "").lower() not in allowed:
            found.append(
                f"source repository {identity.source_repository!r} is not one of "
                f"{', '.join(self.repositories)}"
            )
        if not (identity.source_ref or "").startswith(self.ref_prefix):
            found.append(f"ref {identity.source_ref!r} is not a {self.ref_prefix}* ref")
        return found


def _verify_sct(
    certificate: x509.Certificate, issuer: x509.Certificate, root: TrustedRoot, label: str
) -> None:
    try:
        scts = certificate.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        raise _fail(label, "the signing certificate carries no SCT") from None
    issuer_key_hash = hashlib.sha256(
        issuer.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    ).digest()
    tbs = certificate.tbs_precertificate_bytes
    for sct in scts:
        log = next((item for item in root.ctlogs if item.log_id == sct.log_id), None)
        if log is None:
            continue
        milliseconds = (sct.timestamp.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // (
            timedelta(milliseconds=1)
        )
        signed = (
            struct.pack(">BBQH", 0, 0, milliseconds, 1)
            + issuer_key_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + len(sct.extension_bytes).to_bytes(2, "big")
            + sct.extension_bytes
        )
        if _verify_signature(log.public_key, sct.signature, signed):
            return
    raise _fail(label, "no SCT on the signing certificate verifies with a trusted CT log")


def verify_certificate(
    certificate: x509.Certificate, root: TrustedRoot, when: datetime, label: str
) -> None:
    """Chain to a trusted Fulcio CA at `when`, code-signing usage, and a valid SCT."""
    authorities = [ca for ca in root.authorities if ca.validity.covers(when)]
    anchors = [item for ca in authorities for item in ca.certificates]
    if not anchors:
        raise _fail(label, "no trusted certificate authority was valid at the signing time")
    relaxed_eku = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    relaxed_ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(when)
        .extension_policies(ca_policy=relaxed_ca, ee_policy=relaxed_eku)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(certificate, []).chain
    except (VerificationError, x509.UnsupportedGeneralNameType) as error:
        raise _fail(
            label, f"the signing certificate does not chain to a trusted CA ({error})"
        ) from error
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise _fail(label, "the signing certificate lacks key usage extensions") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise _fail(label, "the signing certificate is not for code signing")
    _verify_sct(certificate, chain[1], root, label)


# --- statements -------------------------------------------------------------------------------


def check_statement(
    envelope: Envelope, manifest: PackageVersion, predicate_types: Sequence[str], label: str
) -> Mapping[str, Any]:
    """The in-toto statement must name exactly this purl with the tarball's sha512."""
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise _fail(label, f"the envelope holds {envelope.payload_type!r}, not in-toto")
    try:
        statement = json.loads(envelope.payload)
    except ValueError as error:
        raise _fail(label, "the attestation payload is not JSON") from error
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise _fail(label, "the attestation payload is not an in-toto statement")
    if statement.get("predicateType") not in predicate_types:
        raise _fail(label, f"the statement's predicate is {statement.get('predicateType')!r}")
    purl = package_purl(manifest.name, manifest.version)
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise _fail(label, "the statement must have exactly one subject")
    subject = subjects[0]
    if subject.get("name") != purl:
        raise _fail(label, f"the statement's subject is {subject.get('name')!r}, not {purl}")
    digest = subject.get("digest")
    expected = integrity_hex(manifest.dist.integrity)
    if not isinstance(digest, dict) or digest.get("sha512") != expected:
        raise _fail(label, "the statement's subject sha512 differs from the tarball's integrity")
    predicate = statement.get("predicate")
    return predicate if isinstance(predicate, dict) else {}


def _one_entry(bundle: Bundle, label: str) -> TlogEntry:
    if len(bundle.tlog_entries) != 1:
        raise _fail(label, f"expected one transparency-log entry, found {len(bundle.tlog_entries)}")
    return bundle.tlog_entries[0]


@dataclass(frozen=True)
class ProvenanceFacts:
    """What a verified SLSA provenance bundle proves."""

    identity: Identity
    log_index: int
    signed_at: datetime


def verify_slsa_provenance(
    bundle: Bundle,
    manifest: PackageVersion,
    root: TrustedRoot,
    identity_policy: IdentityPolicy,
) -> ProvenanceFacts:
    """Fully verify a certificate-signed SLSA provenance bundle for `manifest`."""
    label = f"{manifest.name}@{manifest.version}"
    certificate = bundle.certificate
    if certificate is None:
        raise _fail(label, "the provenance bundle has no signing certificate")
    entry = _one_entry(bundle, label)
    when = verify_tlog_entry(entry, root, label)
    verify_certificate(certificate, root, when, label)
    identity = certificate_identity(certificate)
    problems = identity_policy.problems(identity)
    if problems:
        raise _fail(label, "the provenance signer is not allowed: " + "; ".join(problems))
    key = certificate.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise _fail(label, "the signing certificate's key type is not supported")
    envelope = bundle.envelope
    if len(envelope.signatures) != 1 or not _verify_signature(
        key, envelope.signatures[0], envelope.pae()
    ):
        raise _fail(label, "the provenance envelope's signature does not verify")
    check_entry_body(entry, envelope, certificate, label)
    predicate = check_statement(envelope, manifest, SLSA_PREDICATES, label)
    definition = predicate.get("buildDefinition") or {}
    workflow = (definition.get("externalParameters") or {}).get("workflow")
    if isinstance(workflow, dict) and workflow.get("repository") is not None and (
        str(workflow["repository"]).lower() != (identity.source_repository or "").lower()
    ):
        raise _fail(label, "the provenance predicate names another repository than its signer")
    return ProvenanceFacts(identity, entry.log_index, when)


def verify_publish_attestation(
    bundle: Bundle, manifest: PackageVersion, root: TrustedRoot, key: RegistryKey
) -> datetime:
    """Verify the registry-key-signed npm publish attestation for `manifest`."""
    label = f"{manifest.name}@{manifest.version}"
    entry = _one_entry(bundle, label)
    when = verify_tlog_entry(entry, root, label)
    if not key.valid_at(when):
        raise _fail(label, f"registry key {key.keyid} had expired when the attestation was logged")
    envelope = bundle.envelope
    if len(envelope.signatures) != 1 or not _verify_signature(
        key.public_key, envelope.signatures[0], envelope.pae()
    ):
        raise _fail(label, f"the publish attestation does not verify with key {key.keyid}")
    check_entry_body(entry, envelope, key.public_key, label)
    predicate = check_statement(envelope, manifest, (PUBLISH_PREDICATE,), label)
    if predicate.get("name") != manifest.name or predicate.get("version") != manifest.version:
        raise _fail(label, "the publish attestation names another package or version")
    return when


# --- policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvenanceCheck:
    """The provenance outcome for one package version, as recorded in the audit trail."""

    name: str
    version: str
    policy: Policy
    status: ProvenanceStatus
    publish_attestation: PublishStatus
    previous_version: str | None = None
    previous_had_provenance: bool = False
    facts: ProvenanceFacts | None = None
    notes: tuple[str, ...] = field(default=())

    def as_evidence(self) -> dict[str, Any]:
        """The check as audit evidence."""
        identity = self.facts.identity if self.facts else None
        return {
            "name": self.name,
            "version": self.version,
            "policy": self.policy,
            "provenance": self.status,
            "verified": self.status == "verified",
            "publish_attestation": self.publish_attestation,
            "previous_version": self.previous_version,
            "previous_had_provenance": self.previous_had_provenance,
            "issuer": identity.issuer if identity else None,
            "source_repository": identity.source_repository if identity else None,
            "source_ref": identity.source_ref if identity else None,
            "signer": identity.subject if identity else None,
            "log_index": self.facts.log_index if self.facts else None,
            "signed_at": self.facts.signed_at.isoformat() if self.facts else None,
            "notes": list(self.notes),
        }


def announces_provenance(manifest: PackageVersion) -> bool:
    """Whether the packument announces SLSA provenance for this version."""
    return manifest.dist.attestations_url is not None and (
        manifest.dist.provenance_predicate in SLSA_PREDICATES
    )


def check_provenance(
    manifest: PackageVersion,
    attestations: tuple[Attestation, ...] | None,
    *,
    previous: PackageVersion | None,
    policy: Policy,
    root: TrustedRoot,
    identity_policy: IdentityPolicy,
    keys: TrustedKeys,
) -> ProvenanceCheck:
    """Apply `policy` and "no downgrade" to one version's attestations (None: none served)."""
    label = f"{manifest.name}@{manifest.version}"
    previous_had = previous is not None and announces_provenance(previous)
    previous_version = previous.version if previous else None

    def result(
        status: ProvenanceStatus,
        publish: PublishStatus,
        facts: ProvenanceFacts | None = None,
        notes: tuple[str, ...] = (),
    ) -> ProvenanceCheck:
        return ProvenanceCheck(
            manifest.name,
            manifest.version,
            policy,
            status,
            publish,
            previous_version,
            previous_had,
            facts,
            notes,
        )

    if policy == "off":
        return result("off", "off")
    by_type = {item.predicate_type: item for item in attestations or ()}
    provenance = next((by_type[kind] for kind in SLSA_PREDICATES if kind in by_type), None)
    if provenance is None:
        if manifest.dist.attestations_url is not None and attestations is None:
            raise _fail(label, "the packument announces attestations but the registry serves none")
        if policy == "required":
            raise _fail(label, "policy requires provenance and this version has none")
        if previous_had:
            raise _fail(
                label,
                f"{previous_version} had provenance and this version has "
                "none (no downgrade)",
            )
    facts = (
        verify_slsa_provenance(
            parse_bundle(provenance.bundle, source=f"{label} provenance"),
            manifest,
            root,
            identity_policy,
        )
        if provenance is not None
        else None
    )
    publish_status: PublishStatus = "absent"
    notes: list[str] = []
    publish = by_type.get(PUBLISH_PREDICATE)
    if publish is not None:
        bundle = parse_bundle(publish.bundle, source=f"{label} publish attestation")
        key = keys.find(bundle.key_hint or "")
        if key is not None:
            verify_publish_attestation(bundle, manifest, root, key)
            publish_status = "verified"
        elif keys.keys or policy == "required":
            raise _fail(label, f"the publish attestation names unknown key {bundle.key_hint!r}")
        else:
            publish_status = "not verifiable"
            notes.append(f"{host_of(keys.registry)} publishes no keys for the publish attestation")
    return result("verified" if facts else "absent", publish_status, facts, tuple(notes))
