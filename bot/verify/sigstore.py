"""Sigstore bundles verified offline with `cryptography` against a pinned trusted root.

pip `sigstore` cannot verify npm's bundles: npm records them in Rekor as `intoto` 0.0.2 entries,
which sigstore-python rejects, and it does not verify key-signed bundles (npm's publish
attestation) at all.  So this module implements the checks itself, against a trusted root in
sigstore's standard `trusted_root.json` format (the pinned public-good copy is
`bot/data/sigstore-trusted-root.json`, taken from the sigstore package on PyPI;
`<state_dir>/trust/sigstore-trusted-root.json` replaces it):
- a transparency-log entry: the signed entry timestamp (inclusion promise) by a trusted log key,
  which gives the signing time; the Merkle inclusion proof and signed checkpoint when present;
  a body recording this envelope's payload hash, signatures and signer (`intoto` 0.0.2 and
  `dsse` 0.0.1 entries);
- a Fulcio certificate: chains to a trusted CA at the signing time, code-signing usage, an SCT
  from a trusted CT log; its identity (OIDC issuer, source repository, ref) against a policy.
Bundles timestamped only by an RFC 3161 authority (no inclusion promise) are refused.
Every failure is a `VerificationFailed` naming the package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

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

from bot import DATA_DIR
from bot.errors import ConfigError, InvalidRemoteData, VerificationFailed

TRUSTED_ROOT_FILE = DATA_DIR / "sigstore-trusted-root.json"
TRUST_OVERRIDE_NAME = "sigstore-trusted-root.json"
GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

_FULCIO = "1.3.6.1.4.1.57264.1."
OID_ISSUER_V1 = ObjectIdentifier(_FULCIO + "1")
OID_WORKFLOW_REPOSITORY_V1 = ObjectIdentifier(_FULCIO + "5")
OID_WORKFLOW_REF_V1 = ObjectIdentifier(_FULCIO + "6")
OID_ISSUER = ObjectIdentifier(_FULCIO + "8")
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier(_FULCIO + "12")
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier(_FULCIO + "14")

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def fail(label: str, reason: str, **fields: Any) -> VerificationFailed:
    """A provenance `VerificationFailed` for `label` (package@version), saying not to bypass."""
    return VerificationFailed(
        f"provenance check failed for {label}: {reason}; do not bypass — keep the known-good pins",
        package=label,
        **fields,
    )


def verify_signature(key: PublicKey, signature: bytes, data: bytes) -> bool:
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


def public_der(key: PublicKey) -> bytes:
    """The key as DER SubjectPublicKeyInfo."""
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


def require_object(value: object, what: str, source: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else `InvalidRemoteData` naming the field."""
    if not isinstance(value, dict):
        raise InvalidRemoteData(f"{source}: bundle field {what} is missing")
    return value


def _tlog_entry(raw: object, source: str) -> TlogEntry:
    entry = require_object(raw, "tlogEntries[]", source)
    kind_version = require_object(entry.get("kindVersion"), "kindVersion", source)
    promise = entry.get("inclusionPromise")
    proof_data = entry.get("inclusionProof")
    proof = None
    if isinstance(proof_data, dict):
        signed_note = require_object(proof_data.get("checkpoint"), "checkpoint", source)
        checkpoint = signed_note.get("envelope")
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
        log_id=_b64(
            require_object(entry.get("logId"), "logId", source).get("keyId"), "logId", source
        ),
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
    bundle = require_object(data, "bundle", source)
    media_type = bundle.get("mediaType")
    if not isinstance(media_type, str) or not media_type.startswith(
        "application/vnd.dev.sigstore.bundle"
    ):
        raise InvalidRemoteData(f"{source}: not a sigstore bundle (mediaType {media_type!r})")
    material = require_object(bundle.get("verificationMaterial"), "verificationMaterial", source)
    certificate = None
    if isinstance(material.get("certificate"), dict):
        der = _b64(material["certificate"].get("rawBytes"), "certificate", source)
    elif isinstance(material.get("x509CertificateChain"), dict):
        chain = material["x509CertificateChain"].get("certificates") or [{}]
        first = require_object(chain[0], "certificates[0]", source)
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
    envelope_data = require_object(bundle.get("dsseEnvelope"), "dsseEnvelope", source)
    envelope = Envelope(
        payload=_b64(envelope_data.get("payload"), "payload", source),
        payload_type=str(envelope_data.get("payloadType")),
        signatures=tuple(
            _b64(require_object(item, "signatures[]", source).get("sig"), "sig", source)
            for item in envelope_data.get("signatures") or []
        ),
    )
    return Bundle(
        media_type=media_type,
        envelope=envelope,
        certificate=certificate,
        key_hint=key_hint if isinstance(key_hint, str) else None,
        tlog_entries=tuple(_tlog_entry(item, source) for item in material.get("tlogEntries") or []),
    )


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
    hint = hashlib.sha256(public_der(log.public_key)).digest()[:4]
    for line in signature_block.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            continue
        try:
            raw = base64.b64decode(parts[2], validate=True)
        except binascii.Error:
            continue
        if raw[:4] == hint and verify_signature(log.public_key, raw[4:], (note + "\n").encode()):
            return True
    return False


def verify_tlog_entry(entry: TlogEntry, root: TrustedRoot, label: str) -> datetime:
    """Check an entry's promise, proof and checkpoint; return its (now proven) integrated time."""
    log = root.tlog(entry.log_id)
    if log is None:
        raise fail(label, "the bundle's transparency log is not in the trusted root")
    if entry.promise is None:
        raise fail(label, "the log entry has no inclusion promise, so no trusted signing time")
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
    if not verify_signature(log.public_key, entry.promise, signed):
        raise fail(label, "the log's signed entry timestamp does not verify")
    when = datetime.fromtimestamp(entry.integrated_time, UTC)
    if not log.validity.covers(when):
        raise fail(label, "the log key was not valid at the entry's integrated time")
    proof = entry.proof
    if proof is not None:
        computed = root_from_inclusion_proof(
            proof.log_index, proof.tree_size, _leaf_hash(entry.body), proof.hashes
        )
        if computed is None or computed != proof.root_hash:
            raise fail(label, "the inclusion proof does not lead to the recorded root")
        if not _verify_checkpoint(proof, log):
            raise fail(label, "the log checkpoint is not signed by the log or names another root")
    return when


def _same_signer(pem: bytes, signer: x509.Certificate | PublicKey) -> bool:
    try:
        if isinstance(signer, x509.Certificate):
            return x509.load_pem_x509_certificate(pem) == signer
        return public_der(signer) == _der_of_pem_key(pem)
    except ValueError:
        return False


def _der_of_pem_key(pem: bytes) -> bytes:
    key = serialization.load_pem_public_key(pem)
    return bytes(
        key.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def check_entry_body(
    entry: TlogEntry, envelope: Envelope, signer: x509.Certificate | PublicKey, label: str
) -> None:
    """The log entry must record this envelope's payload hash, signatures and signer."""
    try:
        body = json.loads(entry.body)
        if (body.get("kind"), body.get("apiVersion")) != (entry.kind, entry.version):
            raise fail(label, "the log entry body disagrees with its kind and version")
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
                raise fail(label, "the log entry records another payload type")
        elif (entry.kind, entry.version) == ("dsse", "0.0.1"):
            recorded_hash = body["spec"]["payloadHash"]
            recorded = [
                (base64.b64decode(item["signature"]), base64.b64decode(item["verifier"]))
                for item in body["spec"]["signatures"]
            ]
        else:
            raise fail(label, f"unsupported log entry type {entry.kind}/{entry.version}")
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise fail(label, "the log entry body is malformed") from error
    if recorded_hash.get("algorithm") != "sha256" or recorded_hash.get("value") != payload_hash:
        raise fail(label, "the log entry records another payload hash")
    if sorted(sig for sig, _ in recorded) != sorted(envelope.signatures) or not all(
        _same_signer(pem, signer) for _, pem in recorded
    ):
        raise fail(label, "the log entry records other signatures or another signer")


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
        raise fail(label, "the signing certificate carries no SCT") from None
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
        if verify_signature(log.public_key, sct.signature, signed):
            return
    raise fail(label, "no SCT on the signing certificate verifies with a trusted CT log")


def verify_certificate(
    certificate: x509.Certificate, root: TrustedRoot, when: datetime, label: str
) -> None:
    """Chain to a trusted Fulcio CA at `when`, code-signing usage, and a valid SCT."""
    authorities = [ca for ca in root.authorities if ca.validity.covers(when)]
    anchors = [item for ca in authorities for item in ca.certificates]
    if not anchors:
        raise fail(label, "no trusted certificate authority was valid at the signing time")
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
        raise fail(
            label, f"the signing certificate does not chain to a trusted CA ({error})"
        ) from error
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise fail(label, "the signing certificate lacks key usage extensions") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise fail(label, "the signing certificate is not for code signing")
    _verify_sct(certificate, chain[1], root, label)
