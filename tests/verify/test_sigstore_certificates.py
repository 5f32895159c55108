"""Fulcio certificates (bot/verify/sigstore/certificates.py): identity extensions read exactly,
the identity policy, the issuer key and the SCTs — each refusal with its whole reason."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from bot.errors import VerificationFailed
from bot.verify.sigstore import (
    GITHUB_ACTIONS_ISSUER,
    Identity,
    IdentityPolicy,
    certificate_identity,
    parse_trusted_root,
    verify_certificate,
)
from tests.support.signing_registry import TestSigstore, der_utf8, extension_certificate
from tests.verify.sigstore_cases import failure

SIGNED_AT = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def test_an_empty_v2_repository_is_not_replaced_by_the_v1_one() -> None:
    # the v2 extension is there, only empty: the v1 `owner/name` must not stand in for it
    certificate = extension_certificate({"12": der_utf8(""), "5": b"lovell/sharp"})

    assert certificate_identity(certificate).source_repository == ""


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(der_utf8("https://github.com/lovell/sharp") + b"x", id="a byte after"),
        pytest.param(der_utf8("https://github.com/lovell/sharp")[:-1], id="a byte short"),
        pytest.param(
            der_utf8("https://github.com/" + "s" * 200) + b"x", id="long form, a byte after"
        ),
        pytest.param(
            der_utf8("https://github.com/" + "s" * 200)[:-1], id="long form, a byte short"
        ),
    ],
)
def test_a_v2_value_that_is_not_exactly_one_der_string_gives_no_repository(raw: bytes) -> None:
    certificate = extension_certificate({"12": raw})

    assert certificate_identity(certificate).source_repository is None


def test_an_identity_without_repository_or_ref_fails_even_an_empty_ref_prefix() -> None:
    policy = IdentityPolicy(("lovell/sharp",), ref_prefix="")
    identity = Identity(
        issuer=GITHUB_ACTIONS_ISSUER, source_repository=None, source_ref=None, subject=None
    )

    assert policy.problems(identity) == [
        "source repository None is not one of lovell/sharp",
        "ref None is not a * ref",
    ]


def test_an_sct_from_an_unknown_log_is_skipped_for_the_trusted_one_after_it() -> None:
    sigstore = TestSigstore()
    # the same Fulcio keys, another CT log: its SCT is well formed but from an untrusted log
    other_log = TestSigstore(root_key=sigstore.root_key, intermediate_key=sigstore.intermediate_key)
    precertificate = sigstore.leaf_certificate(
        ec.generate_private_key(ec.SECP256R1()),
        repository="lovell/sharp",
        ref="refs/tags/v1.0.0",
        issuer=GITHUB_ACTIONS_ISSUER,
        signed_at=SIGNED_AT,
        with_sct=False,
    )
    certificate = sigstore.with_scts(
        precertificate,
        [other_log.sct(precertificate, SIGNED_AT), sigstore.sct(precertificate, SIGNED_AT)],
    )
    root = parse_trusted_root(sigstore.trusted_root(), source="x")

    verify_certificate(certificate, root, SIGNED_AT, "x")

    only_untrusted = sigstore.with_scts(precertificate, [other_log.sct(precertificate, SIGNED_AT)])
    with pytest.raises(
        VerificationFailed,
        match=failure("x", "no SCT on the signing certificate verifies with a trusted CT log"),
    ):
        verify_certificate(only_untrusted, root, SIGNED_AT, "x")


def test_a_certificate_issued_by_an_rsa_intermediate_is_refused() -> None:
    # no Fulcio CA has an RSA key; the SCT's issuer key hash is only computed for EC and Ed25519
    sigstore = TestSigstore(
        intermediate_key=rsa.generate_private_key(public_exponent=65537, key_size=2048)  # type: ignore[arg-type]
    )
    certificate = sigstore.leaf_certificate(
        ec.generate_private_key(ec.SECP256R1()),
        repository="lovell/sharp",
        ref="refs/tags/v1.0.0",
        issuer=GITHUB_ACTIONS_ISSUER,
        signed_at=SIGNED_AT,
    )
    root = parse_trusted_root(sigstore.trusted_root(), source="x")

    with pytest.raises(
        VerificationFailed,
        match=failure("x", "the certificate issuer's key type is not supported"),
    ):
        verify_certificate(certificate, root, SIGNED_AT, "x")
