"""The sigstore trusted root (bot/verify/sigstore/trust.py): the shipped one, an operator's
override, what is kept of each entry, and every unusable document refused with a one-line
error naming the file."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.errors import ConfigError
from bot.verify.sigstore import (
    TRUSTED_ROOT_FILE,
    load_trusted_root,
    parse_trusted_root,
    trusted_root_for,
)
from bot.verify.sigstore.trust import Validity
from tests.verify.sigstore_cases import SIGSTORE_JS


def _shipped() -> Any:
    return json.loads(TRUSTED_ROOT_FILE.read_text(encoding="utf-8"))


def test_the_shipped_root_is_read_with_each_log_its_key_validity_and_origin() -> None:
    root = load_trusted_root()

    assert [log.origin for log in root.tlogs] == [
        "rekor.sigstore.dev",
        "log2025-1.rekor.sigstore.dev",
    ]
    assert root.tlogs[0].validity == Validity(datetime(2021, 1, 12, 11, 53, 27, tzinfo=UTC))
    assert root.tlog(root.tlogs[1].log_id) is root.tlogs[1]
    assert root.tlog(b"\x00" * 32) is None
    assert len(root.timestamp_authorities) == 1
    assert len(root.timestamp_authorities[0].certificates) == 2


def test_a_log_key_of_a_type_the_verifier_does_not_use_is_left_out() -> None:
    # sigstore-js's root lists the staging CT log's PKCS#1 RSA key beside two EC ones
    data = json.loads((SIGSTORE_JS / "trusted_root.json").read_text(encoding="utf-8"))
    assert data["ctlogs"][0]["publicKey"]["keyDetails"] == "PKCS1_RSA_PKCS1V5"

    root = parse_trusted_root(data, source="x")

    assert [log.origin for log in root.ctlogs] == ["ctfe.sigstore.dev", "ctfe.sigstore.dev"]


def test_a_validity_period_includes_both_its_ends() -> None:
    start = datetime(2025, 1, 1, tzinfo=UTC)
    until = datetime(2025, 2, 1, tzinfo=UTC)
    period = Validity(start, until)

    assert period.covers(start) and period.covers(until)
    assert not period.covers(datetime(2024, 12, 31, 23, 59, 59, tzinfo=UTC))
    assert not period.covers(datetime(2025, 2, 1, 0, 0, 1, tzinfo=UTC))
    assert Validity(start).covers(datetime(2100, 1, 1, tzinfo=UTC))


def test_an_entry_without_validfor_is_valid_from_1970() -> None:
    data = _shipped()
    del data["tlogs"][0]["publicKey"]["validFor"]
    data["certificateAuthorities"][0]["validFor"] = None

    root = parse_trusted_root(data, source="x")

    assert root.tlogs[0].validity == Validity(datetime(1970, 1, 1, tzinfo=UTC))
    assert root.authorities[0].validity == Validity(datetime(1970, 1, 1, tzinfo=UTC))


def test_a_log_without_a_base_url_has_no_origin() -> None:
    data = _shipped()
    del data["tlogs"][1]["baseUrl"]

    assert parse_trusted_root(data, source="x").tlogs[1].origin == ""


def _edit(path: str, value: object) -> Callable[[Any], None]:
    """Set (or, for DELETE, remove) the field at a `/`-separated path."""

    def edit(data: Any) -> None:
        *parents, last = path.split("/")
        for key in parents:
            data = data[int(key) if key.isdigit() else key]
        if value is DELETE:
            del data[int(last) if last.isdigit() else last]
        else:
            data[int(last) if last.isdigit() else last] = value

    return edit


DELETE = object()

UNUSABLE = {
    "start not text": (_edit("tlogs/0/publicKey/validFor/start", 2021), "validFor timestamps must be strings"),
    "end not text": (_edit("tlogs/0/publicKey/validFor/end", 2030), "validFor timestamps must be strings"),
    "start not a time": (_edit("tlogs/0/publicKey/validFor/start", "soon"), "'soon' is not an ISO timestamp"),
    "start without zone": (_edit("certificateAuthorities/0/validFor/start", "2022-04-13T20:06:15"), "'2022-04-13T20:06:15' has no time zone"),
    "log key missing": (_edit("tlogs/0/publicKey/rawBytes", DELETE), "a log entry has no usable key or logId"),
    "log key not DER": (_edit("ctlogs/0/publicKey/rawBytes", "AAAA"), "a log entry has no usable key or logId"),
    "log id not base64": (_edit("tlogs/0/logId/keyId", "not base64!"), "a log entry has no usable key or logId"),
    "log not an object": (_edit("tlogs/0", "x"), "a log entry has no usable key or logId"),
    "chain missing": (_edit("certificateAuthorities/0/certChain", DELETE), "a certificate authority has an unusable chain"),
    "chain entry not DER": (_edit("timestampAuthorities/0/certChain/certificates/0/rawBytes", "AAAA"), "a timestamp authority has an unusable chain"),
    "chain empty": (_edit("certificateAuthorities/0/certChain/certificates", []), "a certificate authority has an empty chain"),
    "no logs": (_edit("tlogs", []), "a trusted root needs tlogs, certificateAuthorities, ctlogs"),
    "logs not a list": (_edit("tlogs", {"0": {}}), "a trusted root needs tlogs, certificateAuthorities, ctlogs"),
    "no authorities": (_edit("certificateAuthorities", DELETE), "a trusted root needs tlogs, certificateAuthorities, ctlogs"),
    "no CT logs": (_edit("ctlogs", []), "a trusted root needs tlogs, certificateAuthorities, ctlogs"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(UNUSABLE))
def test_an_unusable_trusted_root_is_refused_naming_the_file(case: str) -> None:
    change, reason = UNUSABLE[case]
    data = _shipped()
    change(data)

    with pytest.raises(ConfigError, match="^" + re.escape(f"root.json: {reason}") + "$"):
        parse_trusted_root(data, source="root.json")


def test_a_trusted_root_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(ConfigError, match="^root.json: a trusted root must be a JSON object$"):
        parse_trusted_root([], source="root.json")


def test_an_unreadable_or_invalid_trusted_root_file_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "missing.json"
    with pytest.raises(
        ConfigError,
        match="^"
        + re.escape(f"{missing}: cannot read the sigstore trusted root (No such file or directory)")
        + "$",
    ):
        load_trusted_root(missing)

    for text in (b"{", b'{"tlogs": "\xff"}'):  # cut short; not UTF-8
        broken = tmp_path / "broken.json"
        broken.write_bytes(text)
        with pytest.raises(
            ConfigError,
            match="^" + re.escape(f"{broken}: the sigstore trusted root is not valid JSON") + "$",
        ):
            load_trusted_root(broken)


def test_an_operators_trusted_root_replaces_the_shipped_one(tmp_path: Path) -> None:
    shipped = trusted_root_for(tmp_path)
    assert shipped == load_trusted_root()

    data = json.loads((SIGSTORE_JS / "trusted_root.json").read_text(encoding="utf-8"))
    override = tmp_path / "trust" / "sigstore-trusted-root.json"
    override.parent.mkdir()
    override.write_text(json.dumps(data), encoding="utf-8")

    assert trusted_root_for(tmp_path) == parse_trusted_root(data, source="x")
    assert trusted_root_for(tmp_path) != shipped

    override.write_text("[]", encoding="utf-8")
    with pytest.raises(ConfigError, match="^" + re.escape(f"{override}: a trusted root must")):
        trusted_root_for(tmp_path)
