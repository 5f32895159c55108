"""Keys and signatures shared by the sigstore checks (bot/verify/sigstore/keys.py)."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from bot.verify.sigstore import fail, verify_signature

DATA = b"what the log signed"


def test_a_failure_names_the_package_in_its_evidence() -> None:
    error = fail("sharp@0.34.5", "the reason")

    assert error.as_evidence() == {
        "error": "verification-failed",
        "message": "provenance check failed for sharp@0.34.5: the reason; do not bypass — keep "
        "the known-good pins",
        "package": "sharp@0.34.5",
    }


@pytest.mark.parametrize(
    ("curve", "algorithm", "other"),
    [
        (ec.SECP256R1(), hashes.SHA256(), hashes.SHA384()),  # PKIX_ECDSA_P256_SHA_256
        (ec.SECP384R1(), hashes.SHA384(), hashes.SHA256()),  # PKIX_ECDSA_P384_SHA_384
    ],
    ids=["P-256", "P-384"],
)
def test_an_ecdsa_signature_verifies_only_with_its_curves_hash(
    curve: ec.EllipticCurve, algorithm: hashes.HashAlgorithm, other: hashes.HashAlgorithm
) -> None:
    key = ec.generate_private_key(curve)

    assert verify_signature(key.public_key(), key.sign(DATA, ec.ECDSA(algorithm)), DATA)
    assert not verify_signature(key.public_key(), key.sign(DATA, ec.ECDSA(other)), DATA)
    assert not verify_signature(key.public_key(), key.sign(DATA, ec.ECDSA(algorithm)), b"other")


def test_an_ed25519_signature_verifies_over_its_data_only() -> None:
    key = ed25519.Ed25519PrivateKey.generate()

    assert verify_signature(key.public_key(), key.sign(DATA), DATA)
    assert not verify_signature(key.public_key(), key.sign(DATA), b"other")
    assert not verify_signature(key.public_key(), b"\x00" * 64, DATA)
