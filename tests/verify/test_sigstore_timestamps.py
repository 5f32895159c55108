"""RFC 3161 timestamps (bot/verify/sigstore/timestamps.py) from a real TSA whose chain has an
intermediate: sigstore-python's TSA fixture (tests/fixtures/sigstore/README.md)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.errors import VerificationFailed
from bot.verify.sigstore import parse_bundle, parse_trusted_root, verify_bundle
from bot.verify.sigstore.timestamps import verify_timestamps
from tests.verify.sigstore_cases import FIXTURES, REKOR2, failure, material, root_data

TSA = FIXTURES / "sigstore-python-tsa"
LABEL = "bundle.txt"
STAMPED_AT = datetime(2024, 10, 31, 10, 23, 39, tzinfo=UTC)  # the first timestamp's genTime
UNTRUSTED_TIMESTAMP = (
    "an RFC 3161 timestamp does not verify over the signature with a timestamp authority the "
    "trusted root trusts at its time"
)


def _root(authority: dict[str, Any] | None = None) -> Any:
    """sigstore's staging root with the fixture's TSA (leaf, intermediate, root) as its only one."""
    root = root_data(REKOR2)
    root["timestampAuthorities"] = [
        authority or json.loads((TSA / "ca.json").read_text(encoding="utf-8"))
    ]
    return parse_trusted_root(root, source="x")


def _bundle(*, as_published: bool = False) -> Any:
    data = json.loads((TSA / "bundle.txt.sigstore").read_text(encoding="utf-8"))
    timestamps = material(data)["timestampVerificationData"]["rfc3161Timestamps"]
    if not as_published:
        del timestamps[1:]  # the second one covers another signature (see the README)
    return parse_bundle(data, source=LABEL)


def _verify(bundle: Any, root: Any) -> Any:
    return verify_bundle(bundle, root, label=LABEL, artifact=(TSA / "bundle.txt").read_bytes())


def test_a_timestamp_from_a_tsa_with_an_intermediate_verifies() -> None:
    bundle = _bundle()

    assert verify_timestamps(bundle.timestamps, bundle.message.signature, _root(), LABEL) == [
        STAMPED_AT
    ]
    assert _verify(bundle, _root()).signed_at == STAMPED_AT


def test_the_bundle_as_published_fails_on_its_timestamp_over_another_signature() -> None:
    with pytest.raises(VerificationFailed, match=failure(LABEL, UNTRUSTED_TIMESTAMP)):
        _verify(_bundle(as_published=True), _root())


def _authority(change: Any) -> dict[str, Any]:
    authority: dict[str, Any] = json.loads((TSA / "ca.json").read_text(encoding="utf-8"))
    change(authority)
    return authority


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda tsa: tsa["certChain"]["certificates"].pop(1), id="no intermediate"),
        pytest.param(lambda tsa: tsa["certChain"]["certificates"].pop(), id="no root"),
        pytest.param(
            lambda tsa: tsa["validFor"].update(end="2024-10-31T10:23:38Z"),
            id="ended a second before",
        ),
        pytest.param(
            lambda tsa: tsa["validFor"].update(start="2024-10-31T10:23:40Z"),
            id="starts a second after",
        ),
    ],
)
def test_a_timestamp_the_tsa_entry_cannot_vouch_for_fails(change: Any) -> None:
    bundle = _bundle()

    with pytest.raises(VerificationFailed, match=failure(LABEL, UNTRUSTED_TIMESTAMP)):
        verify_timestamps(
            bundle.timestamps, bundle.message.signature, _root(_authority(change)), LABEL
        )


@pytest.mark.parametrize(
    "valid_for",
    [
        {"start": "2024-10-31T10:23:39Z"},
        {"start": "2024-10-31T00:00:00Z", "end": "2024-10-31T10:23:39Z"},
    ],
    ids=["starting at its second", "ending at its second"],
)
def test_a_tsa_valid_up_to_the_timestamps_second_vouches_for_it(valid_for: Any) -> None:
    bundle = _bundle()
    root = _root(_authority(lambda tsa: tsa.update(validFor=valid_for)))

    assert verify_timestamps(bundle.timestamps, bundle.message.signature, root, LABEL) == [
        STAMPED_AT
    ]
