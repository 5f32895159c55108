"""`verify_bundle`'s own refusals (bot/verify/sigstore/verifier.py): real bundles changed in the
one way a check is about, each refused with its whole reason, so removing a check fails a test."""

from __future__ import annotations

import base64
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from bot.errors import VerificationFailed
from tests.verify.sigstore_cases import (
    V02,
    V03_DSSE,
    bundle_data,
    failure,
    material,
    root_data,
    verify,
)

V03 = "happy-path-v0.3"  # another signer's message signature over the same artifact
DSSE_REKOR2 = "v0.3-rekor2-dsse-0.0.2.sigstore.json"


def _rsa_certificate() -> x509.Certificate:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rsa signer")])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )


def test_a_certificate_signed_bundle_verifies_and_names_its_certificate() -> None:
    data = bundle_data(V02)
    leaf = material(data)["x509CertificateChain"]["certificates"][0]["rawBytes"]

    verified = verify(V02, data)

    assert verified.certificate == x509.load_der_x509_certificate(base64.b64decode(leaf))


def test_a_key_given_for_a_certificate_signed_bundle_is_refused() -> None:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()

    with pytest.raises(
        VerificationFailed,
        match=failure(V02, "expected a key-signed bundle, found a signing certificate"),
    ):
        verify(V02, key=key)


def test_a_bundle_with_neither_a_certificate_nor_a_key_is_refused() -> None:
    data = bundle_data(V02)
    del material(data)["x509CertificateChain"]

    with pytest.raises(
        VerificationFailed, match=failure(V02, "the bundle has no signing certificate")
    ):
        verify(V02, data)


def test_a_signing_certificate_with_an_rsa_key_is_refused() -> None:
    data = bundle_data(V02)
    der = _rsa_certificate().public_bytes(serialization.Encoding.DER)
    material(data)["x509CertificateChain"]["certificates"] = [
        {"rawBytes": base64.b64encode(der).decode()}
    ]

    with pytest.raises(
        VerificationFailed,
        match=failure(V02, "the signing certificate's key type is not supported"),
    ):
        verify(V02, data)


def test_a_message_signature_bundle_without_its_artifact_is_refused() -> None:
    with pytest.raises(
        VerificationFailed,
        match=failure(V02, "a message-signature bundle needs the artifact it signs"),
    ):
        verify(V02, artifact=None)


def test_another_artifact_than_the_message_digest_is_refused() -> None:
    with pytest.raises(
        VerificationFailed, match=failure(V02, "the bundle's message digest is not the artifact's")
    ):
        verify(V02, artifact=b"another artifact\n")


def test_a_message_signature_by_another_key_is_refused() -> None:
    # happy-path-v0.3 signs the same artifact with another certificate's key: a well-formed
    # signature over the right bytes, by the wrong signer
    data = bundle_data(V02)
    data["messageSignature"]["signature"] = bundle_data(V03)["messageSignature"]["signature"]

    with pytest.raises(
        VerificationFailed,
        match=failure(V02, "the message signature does not verify over the artifact"),
    ):
        verify(V02, data)


@pytest.mark.parametrize(
    "signatures",
    [
        pytest.param(lambda sigs: [], id="none"),
        pytest.param(lambda sigs: sigs * 2, id="two, the first valid"),
        pytest.param(lambda sigs: [{"sig": base64.b64encode(b"\x30\x00").decode()}], id="invalid"),
    ],
)
def test_an_envelope_without_exactly_one_valid_signature_is_refused(
    signatures: Callable[[list[Any]], list[Any]],
) -> None:
    data = bundle_data(V03_DSSE)
    envelope = data["dsseEnvelope"]
    envelope["signatures"] = signatures(envelope["signatures"])

    with pytest.raises(
        VerificationFailed, match=failure(V03_DSSE, "the envelope's signature does not verify")
    ):
        verify(V03_DSSE, data)


def test_two_log_entries_are_refused() -> None:
    data = bundle_data(V02)
    material(data)["tlogEntries"] *= 2

    with pytest.raises(
        VerificationFailed, match=failure(V02, "expected one transparency-log entry, found 2")
    ):
        verify(V02, data)


@pytest.mark.parametrize(
    "valid_for",
    [
        {"start": "2026-01-01T00:00:00Z"},
        {"start": "2025-01-01T00:00:00Z", "end": "2025-12-01T00:00:00Z"},
    ],
    ids=["not yet", "no longer"],
)
def test_a_rekor_v2_entry_outside_its_log_key_validity_is_refused(valid_for: object) -> None:
    # the entry was logged on 2025-12-11 (its RFC 3161 timestamp); Rekor v2 signs no time
    root = root_data(DSSE_REKOR2)
    for log in root["tlogs"]:
        log["publicKey"]["validFor"] = valid_for

    with pytest.raises(
        VerificationFailed,
        match=failure(DSSE_REKOR2, "the log key was not valid at the bundle's timestamps"),
    ):
        verify(DSSE_REKOR2, root=root)
