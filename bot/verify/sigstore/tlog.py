"""Transparency-log entries: Rekor v1 (signed entry timestamp, inclusion proof, checkpoint) and
Rekor v2 (tile-based: inclusion proof and a checkpoint signed by the log key, no signed time).

Entry bodies that record what was signed:
- Rekor v1: `intoto` 0.0.2 (payload hash, signatures base64 twice, signer as base64 PEM),
  `dsse` 0.0.1 (payload hash, signatures with base64 PEM verifiers), `hashedrekord` 0.0.1
  (artifact hash, signature, base64 PEM key or certificate);
- Rekor v2: `dsse` 0.0.2 and `hashedrekord` 0.0.2 (SHA2_256 digests as base64, signers as DER;
  a DSSE envelope logged as hashedrekord records the digest of its PAE).
Any other kind or version fails closed.  Base64 inside a log entry or a checkpoint note is
decoded leniently: those bytes are covered by the log's signature or the inclusion proof, and a
different spelling of the same bytes would change what was signed.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from bot.verify.sigstore.bundle import Envelope, InclusionProof, MessageSignature, TlogEntry
from bot.verify.sigstore.keys import PublicKey, fail, public_der, verify_signature
from bot.verify.sigstore.trust import TransparencyLog, TrustedRoot

REKOR_V1_KINDS = frozenset({("intoto", "0.0.2"), ("dsse", "0.0.1"), ("hashedrekord", "0.0.1")})
REKOR_V2_KINDS = frozenset({("dsse", "0.0.2"), ("hashedrekord", "0.0.2")})
Signer = x509.Certificate | PublicKey
Content = Envelope | MessageSignature


def is_rekor_v2(entry: TlogEntry) -> bool:
    """Whether the entry's kind and version come from a tile-based Rekor v2 log."""
    return (entry.kind, entry.version) in REKOR_V2_KINDS


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
            while position % 2 == 0:  # position == last > 0 here: it stops at an odd value
                position >>= 1
                last >>= 1
        else:
            result = _node_hash(result, sibling)
        position >>= 1
        last >>= 1
    return result if last == 0 else None


def checkpoint_problem(proof: InclusionProof, log: TransparencyLog, *, origin: bool) -> str | None:
    """Why a signed-note checkpoint does not vouch for `proof` (None when it does).

    The note is `origin\\nsize\\nbase64(root)\\n[extensions…]\\n\\n— name base64(hint+sig)…`;
    one signature line must carry the log's key hint (the first 4 bytes of its log id) and a
    signature by the log key over the note text.  Other lines (witness cosignatures) are ignored.
    With `origin`, the first line must name the log's host (Rekor v2).
    """
    note, separator, signature_block = proof.checkpoint.partition("\n\n")
    if not separator:
        return "the checkpoint has no signature block"
    lines = note.split("\n")
    if len(lines) < 3:
        return "the checkpoint lacks an origin, a size or a root hash"
    if origin and lines[0] != log.origin:
        return f"the checkpoint's origin {lines[0]!r} is not the log {log.origin!r}"
    if lines[1] != str(proof.tree_size):
        return "the checkpoint names another tree size than the proof"
    try:
        if base64.b64decode(lines[2]) != proof.root_hash:
            return "the checkpoint names another root than the proof"
    except binascii.Error:
        return "the checkpoint's root hash is not base64"
    for line in signature_block.splitlines():
        parts = line.split(" ")
        if len(parts) != 3 or parts[0] != "\u2014":
            continue
        try:
            raw = base64.b64decode(parts[2])
        except binascii.Error:
            continue
        if raw[:4] == log.log_id[:4] and verify_signature(
            log.public_key, raw[4:], (note + "\n").encode()
        ):
            return None
    return "the checkpoint carries no valid signature by the log"


def _signed_entry_timestamp(entry: TlogEntry) -> bytes:
    return json.dumps(
        {
            "body": base64.b64encode(entry.body).decode(),
            "integratedTime": entry.integrated_time,
            "logID": entry.log_id.hex(),
            "logIndex": entry.log_index,
        },
        separators=(",", ":"),  # the keys above are in sorted order: Rekor's canonical JSON
    ).encode()


def _verify_proof(entry: TlogEntry, log: TransparencyLog, label: str) -> None:
    proof = entry.proof
    if proof is None:
        raise fail(label, "the log entry has no inclusion proof")
    v2 = is_rekor_v2(entry)
    if v2 and proof.log_index != entry.log_index:
        raise fail(label, "the inclusion proof is for another log index than the entry")
    computed = root_from_inclusion_proof(
        proof.log_index, proof.tree_size, _leaf_hash(entry.body), proof.hashes
    )
    if computed is None or computed != proof.root_hash:
        raise fail(label, "the inclusion proof does not lead to the recorded root")
    problem = checkpoint_problem(proof, log, origin=v2)
    if problem is not None:
        raise fail(label, problem)


def verify_tlog_entry(
    entry: TlogEntry, root: TrustedRoot, label: str, *, bundle_version: str
) -> datetime | None:
    """Check an entry's log, promise, proof and checkpoint; return the time the log signed.

    Rekor v1: a v0.1 bundle needs the signed entry timestamp (inclusion promise), later bundles
    the inclusion proof; whichever is present must verify.  The integrated time is returned only
    when the promise signed it.  Rekor v2 entries need a proof and return None: their time comes
    from RFC 3161 timestamps.
    """
    log = root.tlog(entry.log_id)
    if log is None:
        raise fail(label, "the bundle's transparency log is not in the trusted root")
    kind = (entry.kind, entry.version)
    if kind not in REKOR_V1_KINDS | REKOR_V2_KINDS:
        raise fail(label, f"unsupported log entry type {entry.kind}/{entry.version}")
    if is_rekor_v2(entry):
        _verify_proof(entry, log, label)
        return None
    when = None
    if entry.promise is not None:
        if not verify_signature(log.public_key, entry.promise, _signed_entry_timestamp(entry)):
            raise fail(label, "the log's signed entry timestamp does not verify")
        when = datetime.fromtimestamp(entry.integrated_time, UTC)
        if not log.validity.covers(when):
            raise fail(label, "the log key was not valid at the entry's integrated time")
    elif bundle_version == "0.1":
        raise fail(label, "the log entry has no inclusion promise, so no trusted signing time")
    if entry.proof is not None or bundle_version != "0.1":
        _verify_proof(entry, log, label)
    return when


# --- what the entry records -------------------------------------------------------------------


# How an entry records its signer: each test says whether the recorded bytes are `signer`
# (ValueError when they cannot be read).
SignerTest = Callable[[bytes, Signer], bool]


def _is_pem(encoded: bytes, signer: Signer) -> bool:
    """Rekor v1: a PEM certificate (certificate-signed bundles) or a PEM public key."""
    if isinstance(signer, x509.Certificate):
        return x509.load_pem_x509_certificate(encoded) == signer
    return public_der(serialization.load_pem_public_key(encoded)) == public_der(signer)


def _is_der_certificate(encoded: bytes, signer: Signer) -> bool:
    """Rekor v2: a DER certificate."""
    return x509.load_der_x509_certificate(encoded) == signer


def _is_der_key(encoded: bytes, signer: Signer) -> bool:
    """Rekor v2: a DER public key (for a certificate-signed bundle, the certificate's key)."""
    key = signer.public_key() if isinstance(signer, x509.Certificate) else signer
    return public_der(serialization.load_der_public_key(encoded)) == public_der(key)


def _same_signer(encoded: bytes, signer: Signer, same: SignerTest) -> bool:
    """Whether the certificate or key recorded in a log entry is `signer`."""
    try:
        return same(encoded, signer)
    except ValueError:
        return False


def _v2_verifier(verifier: Mapping[str, Any]) -> tuple[bytes, SignerTest]:
    """The DER bytes of a Rekor v2 verifier and how to read them (certificate or public key)."""
    if "x509Certificate" in verifier:
        return base64.b64decode(verifier["x509Certificate"]["rawBytes"]), _is_der_certificate
    return base64.b64decode(verifier["publicKey"]["rawBytes"]), _is_der_key


def _recorded(entry: TlogEntry, content: Content, label: str) -> tuple[bytes, list[Any]]:
    """The digest an entry records and its (signature, signer bytes, signer test) triples."""
    body = json.loads(entry.body)
    if (body.get("kind"), body.get("apiVersion")) != (entry.kind, entry.version):
        raise fail(label, "the log entry body disagrees with its kind and version")
    spec = body["spec"]
    kind = (entry.kind, entry.version)
    is_envelope = isinstance(content, Envelope)
    if kind != ("hashedrekord", "0.0.2") and is_envelope != (entry.kind != "hashedrekord"):
        raise fail(label, f"a {entry.kind} log entry cannot record this bundle's content")
    if kind == ("intoto", "0.0.2"):
        recorded = spec["content"]
        if not isinstance(content, Envelope) or (
            recorded["envelope"].get("payloadType") != content.payload_type
        ):
            raise fail(label, "the log entry records another payload type")
        signatures = [
            (
                base64.b64decode(base64.b64decode(item["sig"])),
                base64.b64decode(item["publicKey"]),
                _is_pem,
            )
            for item in recorded["envelope"]["signatures"]
        ]
        return _hex_digest(recorded["payloadHash"]), signatures
    if kind == ("dsse", "0.0.1"):
        signatures = [
            (
                base64.b64decode(item["signature"]),
                base64.b64decode(item["verifier"]),
                _is_pem,
            )
            for item in spec["signatures"]
        ]
        return _hex_digest(spec["payloadHash"]), signatures
    if kind == ("hashedrekord", "0.0.1"):
        signature = spec["signature"]
        return _hex_digest(spec["data"]["hash"]), [
            (
                base64.b64decode(signature["content"]),
                base64.b64decode(signature["publicKey"]["content"]),
                _is_pem,
            )
        ]
    if kind == ("dsse", "0.0.2"):
        recorded = spec["dsseV002"]
        return _b64_digest(recorded["payloadHash"]), [
            (
                base64.b64decode(item["content"]),
                *_v2_verifier(item["verifier"]),
            )
            for item in recorded["signatures"]
        ]
    recorded = spec["hashedRekordV002"]
    signature = recorded["signature"]
    return _b64_digest(recorded["data"]), [
        (
            base64.b64decode(signature["content"]),
            *_v2_verifier(signature["verifier"]),
        )
    ]


def _hex_digest(value: Mapping[str, Any]) -> bytes:
    if value.get("algorithm") != "sha256":
        raise ValueError
    return bytes.fromhex(value["value"])


def _b64_digest(value: Mapping[str, Any]) -> bytes:
    if value.get("algorithm") != "SHA2_256":
        raise ValueError
    return base64.b64decode(value["digest"])


def check_entry_body(entry: TlogEntry, content: Content, signer: Signer, label: str) -> None:
    """The log entry must record this content's digest, its signatures and its signer."""
    try:
        digest, recorded = _recorded(entry, content, label)
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error) as error:
        raise fail(label, "the log entry body is malformed") from error
    if isinstance(content, Envelope):
        signatures = content.signatures
        expected = (
            hashlib.sha256(content.pae()).digest()
            if entry.kind == "hashedrekord"
            else hashlib.sha256(content.payload).digest()
        )
    else:
        signatures = (content.signature,)
        expected = content.digest
    if digest != expected:
        raise fail(label, "the log entry records another payload hash")
    if sorted(sig for sig, _, _ in recorded) != sorted(signatures) or not all(
        _same_signer(encoded, signer, same) for _, encoded, same in recorded
    ):
        raise fail(label, "the log entry records other signatures or another signer")
