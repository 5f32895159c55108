"""One sigstore bundle verified end to end against a trusted root, offline.

The order matters: the content signature first (it needs only the signer), then the log entry
and the timestamps that give trusted signing times, then the certificate at every such time,
then the entry body against the content.  Any failure is a `VerificationFailed`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bot.verify.sigstore.bundle import Bundle, Envelope, TlogEntry
from bot.verify.sigstore.certificates import verify_certificate
from bot.verify.sigstore.keys import PublicKey, fail, verify_signature
from bot.verify.sigstore.timestamps import verify_timestamps
from bot.verify.sigstore.tlog import Signer, check_entry_body, is_rekor_v2, verify_tlog_entry
from bot.verify.sigstore.trust import TrustedRoot


@dataclass(frozen=True)
class VerifiedBundle:
    """What a verified bundle proves: the log entry, the earliest trusted time, the signer."""

    entry: TlogEntry
    signed_at: datetime
    certificate: x509.Certificate | None


def _signer(bundle: Bundle, key: PublicKey | None, label: str) -> Signer:
    if key is not None:
        if bundle.certificate is not None:
            raise fail(label, "expected a key-signed bundle, found a signing certificate")
        return key
    if bundle.certificate is None:
        raise fail(label, "the bundle has no signing certificate")
    certificate_key = bundle.certificate.public_key()
    if not isinstance(certificate_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise fail(label, "the signing certificate's key type is not supported")
    return bundle.certificate


def _content_signature(
    bundle: Bundle, signer_key: PublicKey, artifact: bytes | None, label: str
) -> bytes:
    """Verify the envelope or message signature; return the signature bytes timestamps cover."""
    if bundle.envelope is not None:
        envelope: Envelope = bundle.envelope
        if len(envelope.signatures) != 1 or not verify_signature(
            signer_key, envelope.signatures[0], envelope.pae()
        ):
            raise fail(label, "the envelope's signature does not verify")
        return envelope.signatures[0]
    message = bundle.message
    if message is None or artifact is None:
        raise fail(label, "a message-signature bundle needs the artifact it signs")
    if hashlib.sha256(artifact).digest() != message.digest:
        raise fail(label, "the bundle's message digest is not the artifact's")
    if not verify_signature(signer_key, message.signature, artifact):
        raise fail(label, "the message signature does not verify over the artifact")
    return message.signature


def verify_bundle(
    bundle: Bundle,
    root: TrustedRoot,
    *,
    label: str,
    key: PublicKey | None = None,
    artifact: bytes | None = None,
) -> VerifiedBundle:
    """Verify `bundle`: signed by its Fulcio certificate, or by `key` when one is given.

    Needs exactly one transparency-log entry; trusted times come from a Rekor v1 signed entry
    timestamp and from RFC 3161 timestamps (all of which must verify); at least one is needed,
    and the certificate must chain to a trusted CA at each of them.
    """
    signer = _signer(bundle, key, label)
    signer_key = signer.public_key() if isinstance(signer, x509.Certificate) else signer
    assert isinstance(signer_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey)  # noqa: S101
    signature = _content_signature(bundle, signer_key, artifact, label)
    if len(bundle.tlog_entries) != 1:
        raise fail(label, f"expected one transparency-log entry, found {len(bundle.tlog_entries)}")
    entry = bundle.tlog_entries[0]
    logged_at = verify_tlog_entry(entry, root, label, bundle_version=bundle.version)
    times = verify_timestamps(bundle.timestamps, signature, root, label)
    if logged_at is not None:
        times.append(logged_at)
    if not times:
        raise fail(
            label,
            "no trusted signing time: the log entry has no signed entry timestamp and the "
            "bundle no RFC 3161 timestamp",
        )
    if is_rekor_v2(entry):
        log = root.tlog(entry.log_id)
        if log is not None and not all(log.validity.covers(when) for when in times):
            raise fail(label, "the log key was not valid at the bundle's timestamps")
    if isinstance(signer, x509.Certificate):
        for when in times:
            verify_certificate(signer, root, when, label)
    content = bundle.envelope if bundle.envelope is not None else bundle.message
    assert content is not None  # noqa: S101
    check_entry_body(entry, content, signer, label)
    return VerifiedBundle(entry, min(times), bundle.certificate)
