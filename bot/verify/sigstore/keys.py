"""Keys and signatures shared by the sigstore checks, and the one failure they raise."""

from __future__ import annotations

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes

from bot.errors import VerificationFailed

PublicKey = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey


def fail(label: str, reason: str) -> VerificationFailed:
    """A provenance `VerificationFailed` for `label` (package@version), saying not to bypass."""
    return VerificationFailed(
        f"provenance check failed for {label}: {reason}; do not bypass — keep the known-good pins",
        package=label,
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


def public_der(key: PublicKeyTypes) -> bytes:
    """The key as DER SubjectPublicKeyInfo."""
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
