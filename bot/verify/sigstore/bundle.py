"""Sigstore bundles (media types v0.1, v0.2 and v0.3) parsed into frozen values.

A bundle holds either a DSSE envelope or a message signature over an artifact, the signer (a
Fulcio certificate, or the hint of a key the verifier must be given), transparency-log entries
and RFC 3161 timestamps.  Parsing checks shapes only; `bot.verify.sigstore.verifier` checks
meaning.  A media type or a field layout this module does not know fails closed.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cryptography import x509

from bot.errors import InvalidRemoteData

MEDIA_TYPES = {
    "application/vnd.dev.sigstore.bundle+json;version=0.1": "0.1",
    "application/vnd.dev.sigstore.bundle+json;version=0.2": "0.2",
    "application/vnd.dev.sigstore.bundle+json;version=0.3": "0.3",
    "application/vnd.dev.sigstore.bundle.v0.3+json": "0.3",
}


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
class MessageSignature:
    """A signature over an artifact, with the artifact's SHA-256 digest as the signer saw it."""

    digest: bytes
    signature: bytes


@dataclass(frozen=True)
class Bundle:
    """A sigstore bundle: one content (envelope or message signature), its signer and proofs."""

    version: str
    envelope: Envelope | None
    message: MessageSignature | None
    certificate: x509.Certificate | None
    key_hint: str | None
    tlog_entries: tuple[TlogEntry, ...]
    timestamps: tuple[bytes, ...] = ()


def b64(value: object, what: str, source: str) -> bytes:
    """Strict base64 of a bundle field, or `InvalidRemoteData` naming the field."""
    if not isinstance(value, str):
        raise InvalidRemoteData(f"{source}: bundle field {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except binascii.Error as error:
        raise InvalidRemoteData(f"{source}: bundle field {what} is not base64") from error


def _int(value: object, what: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise InvalidRemoteData(f"{source}: bundle field {what} is not a non-negative integer")


def require_object(value: object, what: str, source: str) -> Mapping[str, Any]:
    """`value` if it is a JSON object, else `InvalidRemoteData` naming the field."""
    if not isinstance(value, dict):
        raise InvalidRemoteData(f"{source}: bundle field {what} is missing")
    return value


def _proof(data: object, source: str) -> InclusionProof | None:
    if data is None:
        return None
    proof = require_object(data, "inclusionProof", source)
    signed_note = require_object(proof.get("checkpoint"), "checkpoint", source)
    checkpoint = signed_note.get("envelope")
    if not isinstance(checkpoint, str):
        raise InvalidRemoteData(f"{source}: inclusion proof has no checkpoint")
    hashes = proof.get("hashes") or []
    if not isinstance(hashes, list):
        raise InvalidRemoteData(f"{source}: bundle field inclusionProof.hashes is not a list")
    return InclusionProof(
        log_index=_int(proof.get("logIndex"), "inclusionProof.logIndex", source),
        root_hash=b64(proof.get("rootHash"), "rootHash", source),
        tree_size=_int(proof.get("treeSize"), "treeSize", source),
        hashes=tuple(b64(item, "inclusionProof.hashes", source) for item in hashes),
        checkpoint=checkpoint,
    )


def _tlog_entry(raw: object, source: str) -> TlogEntry:
    entry = require_object(raw, "tlogEntries[]", source)
    kind_version = require_object(entry.get("kindVersion"), "kindVersion", source)
    promise = entry.get("inclusionPromise")
    return TlogEntry(
        log_index=_int(entry.get("logIndex"), "logIndex", source),
        log_id=b64(
            require_object(entry.get("logId"), "logId", source).get("keyId"), "logId", source
        ),
        kind=str(kind_version.get("kind")),
        version=str(kind_version.get("version")),
        integrated_time=_int(entry.get("integratedTime", 0), "integratedTime", source),
        body=b64(entry.get("canonicalizedBody"), "canonicalizedBody", source),
        promise=b64(promise.get("signedEntryTimestamp"), "signedEntryTimestamp", source)
        if isinstance(promise, dict)
        else None,
        proof=_proof(entry.get("inclusionProof"), source),
    )


def _certificate(material: Mapping[str, Any], version: str, source: str) -> x509.Certificate | None:
    """v0.3 carries one `certificate`; v0.1 and v0.2 an `x509CertificateChain` (leaf first)."""
    if version == "0.3":
        if "x509CertificateChain" in material:
            raise InvalidRemoteData(f"{source}: a v0.3 bundle must not carry a certificate chain")
        holder = material.get("certificate")
    else:
        if "certificate" in material:
            raise InvalidRemoteData(f"{source}: a v{version} bundle carries no single certificate")
        chain = material.get("x509CertificateChain")
        if chain is None:
            return None
        certificates = require_object(chain, "x509CertificateChain", source).get("certificates")
        if not isinstance(certificates, list) or not certificates:
            raise InvalidRemoteData(f"{source}: the bundle's certificate chain is empty")
        holder = certificates[0]
    if holder is None:
        return None
    der = b64(require_object(holder, "certificate", source).get("rawBytes"), "certificate", source)
    try:
        return x509.load_der_x509_certificate(der)
    except ValueError as error:
        raise InvalidRemoteData(f"{source}: bundle certificate is not DER X.509") from error


def _envelope(data: Mapping[str, Any], source: str) -> Envelope:
    signatures = data.get("signatures")
    if not isinstance(signatures, list):
        raise InvalidRemoteData(f"{source}: bundle field dsseEnvelope.signatures is missing")
    payload_type = data.get("payloadType")
    if not isinstance(payload_type, str):
        raise InvalidRemoteData(f"{source}: bundle field dsseEnvelope.payloadType is missing")
    return Envelope(
        payload=b64(data.get("payload"), "payload", source),
        payload_type=payload_type,
        signatures=tuple(
            b64(require_object(item, "signatures[]", source).get("sig"), "sig", source)
            for item in signatures
        ),
    )


def _message(data: Mapping[str, Any], source: str) -> MessageSignature:
    digest = require_object(data.get("messageDigest"), "messageDigest", source)
    if digest.get("algorithm") != "SHA2_256":
        raise InvalidRemoteData(
            f"{source}: message digest algorithm {digest.get('algorithm')!r} is not SHA2_256"
        )
    return MessageSignature(
        digest=b64(digest.get("digest"), "messageDigest.digest", source),
        signature=b64(data.get("signature"), "messageSignature.signature", source),
    )


def parse_bundle(data: object, *, source: str) -> Bundle:
    """Validate the shape of a sigstore bundle (media types v0.1 to v0.3)."""
    bundle = require_object(data, "bundle", source)
    media_type = bundle.get("mediaType")
    version = MEDIA_TYPES.get(media_type) if isinstance(media_type, str) else None
    if version is None:
        raise InvalidRemoteData(f"{source}: unsupported sigstore bundle media type {media_type!r}")
    material = require_object(bundle.get("verificationMaterial"), "verificationMaterial", source)
    public_key = material.get("publicKey")
    key_hint = public_key.get("hint") if isinstance(public_key, dict) else None
    envelope_data, message_data = bundle.get("dsseEnvelope"), bundle.get("messageSignature")
    if (envelope_data is None) == (message_data is None):
        raise InvalidRemoteData(
            f"{source}: a bundle holds exactly one of dsseEnvelope and messageSignature"
        )
    timestamp_data = material.get("timestampVerificationData") or {}
    timestamps = require_object(timestamp_data, "timestampVerificationData", source).get(
        "rfc3161Timestamps"
    )
    entries = material.get("tlogEntries") or []
    if not isinstance(entries, list) or not isinstance(timestamps or [], list):
        raise InvalidRemoteData(f"{source}: bundle tlogEntries and timestamps must be lists")
    return Bundle(
        version=version,
        envelope=_envelope(require_object(envelope_data, "dsseEnvelope", source), source)
        if envelope_data is not None
        else None,
        message=_message(require_object(message_data, "messageSignature", source), source)
        if message_data is not None
        else None,
        certificate=_certificate(material, version, source),
        key_hint=key_hint if isinstance(key_hint, str) else None,
        tlog_entries=tuple(_tlog_entry(item, source) for item in entries),
        timestamps=tuple(
            b64(
                require_object(item, "rfc3161Timestamps[]", source).get("signedTimestamp"),
                "signedTimestamp",
                source,
            )
            for item in timestamps or []
        ),
    )
