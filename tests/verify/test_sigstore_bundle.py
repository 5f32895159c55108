"""Bundle shapes (bot/verify/sigstore/bundle.py): what parsing keeps of real bundles' optional
parts — the signer's key hint, a missing certificate, a Rekor v2 entry's absent time."""

from __future__ import annotations

from typing import Any

import pytest

from bot.verify.sigstore import parse_bundle
from tests.verify.sigstore_cases import REKOR2, V02, V03_DSSE, bundle_data, material


@pytest.mark.parametrize(
    ("public_key", "hint"),
    [
        (
            {"hint": "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA"},
            "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
        ),
        ({"hint": 3}, None),
        ("hint", None),
    ],
    ids=["a key hint", "a hint that is not text", "not an object"],
)
def test_a_key_signed_bundle_keeps_its_key_hint_and_has_no_certificate(
    public_key: Any, hint: str | None
) -> None:
    data = bundle_data(V02)
    del material(data)["x509CertificateChain"]
    material(data)["publicKey"] = public_key

    bundle = parse_bundle(data, source=V02)

    assert (bundle.key_hint, bundle.certificate) == (hint, None)


def test_a_v03_bundle_without_a_certificate_has_none() -> None:
    data = bundle_data(V03_DSSE)
    del material(data)["certificate"]

    assert parse_bundle(data, source=V03_DSSE).certificate is None


def test_a_rekor_v2_entry_has_no_integrated_time_nor_promise() -> None:
    entry = parse_bundle(bundle_data(REKOR2), source=REKOR2).tlog_entries[0]

    assert (entry.integrated_time, entry.promise) == (0, None)
    assert (entry.kind, entry.version, entry.log_index) == ("hashedrekord", "0.0.2", 735)
