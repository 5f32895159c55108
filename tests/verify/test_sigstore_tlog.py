"""Transparency-log entries (bot/verify/sigstore/tlog.py) on real bundles: Merkle proofs, the
signed-note checkpoint's signature lines, and what a Rekor v2 entry records of its signer."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from bot.errors import VerificationFailed
from bot.verify.sigstore import check_entry_body, parse_bundle
from bot.verify.sigstore.tlog import root_from_inclusion_proof
from tests.verify.sigstore_cases import V02, bundle_data, failure, proof, verify

WITNESSED = "rekor2-dsse-happy-path"  # its checkpoint carries three witness cosignatures
NO_LOG_SIGNATURE = "the checkpoint carries no valid signature by the log"


def test_an_inclusion_proof_leads_to_its_root_with_exactly_its_hashes() -> None:
    entry = parse_bundle(bundle_data(V02), source=V02).tlog_entries[0]
    assert entry.proof is not None
    index, size, hashes = entry.proof.log_index, entry.proof.tree_size, entry.proof.hashes
    leaf = hashlib.sha256(b"\x00" + entry.body).digest()

    assert root_from_inclusion_proof(index, size, leaf, hashes) == entry.proof.root_hash
    # a proof one hash short leads to a subtree, not to a root: refused, not returned
    assert root_from_inclusion_proof(index, size, leaf, hashes[:-1]) is None
    assert root_from_inclusion_proof(index, size, leaf, (*hashes, hashes[0])) is None


def _signature_lines(change: Callable[[str, list[str]], list[str]]) -> Callable[[Any], None]:
    """Edit a bundle's checkpoint: `change(log_line, witness_lines)` gives the signature lines."""

    def edit(data: Any) -> None:
        checkpoint = proof(data)["checkpoint"]
        note, _, block = checkpoint["envelope"].partition("\n\n")
        log_line, *witnesses = block.splitlines()
        lines = change(log_line, witnesses)
        checkpoint["envelope"] = note + "\n\n" + "".join(line + "\n" for line in lines)

    return edit


def _hint_changed(line: str) -> str:
    dash, name, signature = line.split(" ")
    raw = bytearray(base64.b64decode(signature))
    raw[0] ^= 1
    return f"{dash} {name} {base64.b64encode(bytes(raw)).decode()}"


def test_the_logs_signature_is_found_after_witness_and_malformed_lines() -> None:
    data = bundle_data(WITNESSED)
    _signature_lines(
        lambda log, witnesses: [
            *witnesses,
            "not a signature line",
            "— log2025-alpha3.rekor.sigstage.dev",
            "— log2025-alpha3.rekor.sigstage.dev not-base64!",
            _hint_changed(log),
            log,
        ]
    )(data)

    assert verify(WITNESSED, data).entry.log_index == 4026478


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda log, witnesses: witnesses, id="witnesses only"),
        pytest.param(lambda log, witnesses: [_hint_changed(log)], id="another key hint"),
        pytest.param(lambda log, witnesses: ["-" + log[1:]], id="a hyphen for the em dash"),
        pytest.param(lambda log, witnesses: [log + " extra"], id="a fourth field"),
        pytest.param(lambda log, witnesses: [log.replace(" ", "  ")], id="two spaces"),
    ],
)
def test_a_checkpoint_without_a_well_formed_log_signature_line_fails(
    change: Callable[[str, list[str]], list[str]],
) -> None:
    data = bundle_data(WITNESSED)
    _signature_lines(change)(data)

    with pytest.raises(VerificationFailed, match=failure(WITNESSED, NO_LOG_SIGNATURE)):
        verify(WITNESSED, data)


HASHEDREKORD_V2 = "v0.3-rekor2-hashedrekord-0.0.2.sigstore.json"  # records a DER public key


def test_a_rekor_v2_entry_recording_a_public_key_matches_a_key_signer() -> None:
    # npm's publish attestations are key-signed: the signer is a key, not a certificate
    bundle = parse_bundle(bundle_data(HASHEDREKORD_V2), source=HASHEDREKORD_V2)
    assert bundle.certificate is not None and bundle.message is not None
    key = bundle.certificate.public_key()
    assert isinstance(key, ec.EllipticCurvePublicKey)

    check_entry_body(bundle.tlog_entries[0], bundle.message, key, HASHEDREKORD_V2)

    with pytest.raises(
        VerificationFailed,
        match=failure(HASHEDREKORD_V2, "the log entry records other signatures or another signer"),
    ):
        check_entry_body(
            bundle.tlog_entries[0],
            bundle.message,
            ec.generate_private_key(ec.SECP256R1()).public_key(),
            HASHEDREKORD_V2,
        )
