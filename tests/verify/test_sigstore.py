"""Real sigstore bundles (tests/fixtures/sigstore, sources in its README) against their roots.

Every happy bundle must verify; one character changed in any field must fail; the published
failure cases must fail for their own reason.  Nothing here is generated: these are the
encodings production Rekor v1, Rekor v2, Fulcio and the timestamp authorities really use.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.config import Policy
from bot.errors import BotError, InvalidRemoteData, VerificationFailed
from bot.sources.npm.models import Dist, PackageVersion
from bot.verify.provenance import Attestation, check_provenance
from bot.verify.signatures import trusted_keys
from bot.verify.sigstore import (
    IdentityPolicy,
    load_trusted_root,
    parse_bundle,
    parse_trusted_root,
    verify_bundle,
)
from tests.verify.sigstore_cases import (
    CONFORMANCE,
    NPM_BUNDLE,
    REKOR2,
    SIGSTORE_JS,
    V01,
    V02,
    V03_DSSE,
    case,
    failure,
    material,
    proof,
    tlog,
    verify,
)

SLSA_V1 = "https://slsa.dev/provenance/v1"


# name → (log index, earliest trusted signing time)
HAPPY = {
    "happy-path-v0.1": (27246492, "2023-07-12T15:56:36+00:00"),
    "happy-path-v0.2": (27246492, "2023-07-12T15:56:36+00:00"),
    "happy-path-v0.3": (79571823, "2024-03-19T17:26:26+00:00"),
    "happy-path-v0.3-new-mediaType": (79571823, "2024-03-19T17:26:26+00:00"),
    "happy-path-intoto-in-dsse-v3": (155690850, "2024-12-16T18:42:56+00:00"),
    "rekor2-happy-path": (735, "2025-06-12T12:02:20+00:00"),
    "rekor2-dsse-happy-path": (4026478, "2026-05-13T19:23:33+00:00"),
    "rekor2-timestamp-with-embedded-cert": (29469, "2025-08-06T18:51:36+00:00"),
    "v0.1-hashedrekord-certificate.sigstore.json": (6757503, "2022-11-09T01:33:10+00:00"),
    "v0.1-dsse-intoto-0.0.2.sigstore.json": (6751924, "2022-11-08T22:58:07+00:00"),
    "v0.1-dsse-dsse-0.0.1.sigstore.json": (22797666, "2023-06-05T17:52:55+00:00"),
    "v0.3-rekor2-dsse-0.0.2.sigstore.json": (544346, "2025-12-11T19:36:08+00:00"),
    "v0.3-rekor2-hashedrekord-0.0.2.sigstore.json": (547661, "2025-12-14T02:04:50+00:00"),
}


@pytest.mark.parametrize("name", sorted(HAPPY))
def test_real_bundle_verifies_against_its_trusted_root(name: str) -> None:
    verified = verify(name)
    log_index, signed_at = HAPPY[name]
    assert verified.entry.log_index == log_index
    assert verified.signed_at == datetime.fromisoformat(signed_at)


UNTRUSTED_TIMESTAMP = (
    "an RFC 3161 timestamp does not verify over the signature with a timestamp authority the "
    "trusted root trusts at its time"
)

# The published failure cases, and the whole reason each must fail with.
FAILING = {
    "bundle-unknown-version_fail": "unsupported sigstore bundle media type "
    "'application/vnd.dev.sigstore.bundle+json;version=99.9'",
    # the checkpoint names both another size and another root; the size is checked first
    "checkpoint-wrong-roothash_fail": "the checkpoint names another tree size than the proof",
    "dsse-mismatch-envelope_fail": "the log entry records another payload hash",
    "integrated-time-in-future_fail": "the signing certificate does not chain to a trusted CA "
    "(validation failed: cert is not valid at validation time (encountered processing "
    "<Certificate(subject=<Name()>, ...)>))",
    "intoto-log-entry-mismatch_fail": "the log entry records other signatures or another signer",
    "invalid-ct-key_fail": "no SCT on the signing certificate verifies with a trusted CT log",
    "invalid-inclusion-proof_fail": "bundle field checkpoint is missing",
    "rekor2-checkpoint-no-matching-signature_fail": "the checkpoint's origin "
    "'log2025-alpha1.rekor.github.dev' is not the log 'log2025-alpha1.rekor.sigstage.dev'",
    "rekor2-no-timestamp_fail": "no trusted signing time: the log entry has no signed entry "
    "timestamp and the bundle no RFC 3161 timestamp",
    "rekor2-timestamp-payload-mismatch_fail": UNTRUSTED_TIMESTAMP,
    "rekor2-timestamp-untrusted-tsa-without-embedded-cert_fail": UNTRUSTED_TIMESTAMP,
    "set-invalid-signature_fail": "the log's signed entry timestamp does not verify",
    "v0.3-tsa-only-message-signature.sigstore.json": "expected one transparency-log entry, found 0",
}
MALFORMED_FIXTURES = ("bundle-unknown-version_fail", "invalid-inclusion-proof_fail")


@pytest.mark.parametrize("name", sorted(FAILING))
def test_published_failure_case_fails_for_its_reason(name: str) -> None:
    if name in MALFORMED_FIXTURES:
        with pytest.raises(
            InvalidRemoteData, match="^" + re.escape(f"{name}: {FAILING[name]}") + "$"
        ):
            verify(name)
    else:
        with pytest.raises(VerificationFailed, match=failure(name, FAILING[name])):
            verify(name)


def test_every_fixture_case_is_checked() -> None:
    on_disk = {path.name for path in CONFORMANCE.iterdir() if path.is_dir()} | {
        path.name for path in SIGSTORE_JS.glob("*.sigstore.json")
    }
    assert on_disk == set(HAPPY) | set(FAILING)


# --- one character changed anywhere -----------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

# Fields no verifier reads: DSSE `keyid` hints, and the witness cosignatures of a Rekor v2
# checkpoint (other parties' signatures; only the log's own one is required).
UNCHECKED = ("keyid",)


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], str]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, str) and value and path[-1] not in UNCHECKED:
        yield path, value


def _changed(text: str, path: tuple[Any, ...]) -> str:
    """One character of `text` changed where it carries meaning."""
    if path[-1] == "envelope":  # a checkpoint: change the log's own signature line
        note, _, signatures = text.partition("\n\n")
        first, *others = signatures.split("\n")
        return (
            note
            + "\n\n"
            + first[:-3]
            + ("A" if first[-3] != "A" else "B")
            + first[-2:]
            + ("\n" + "\n".join(others) if others else "")
        )
    # base64: change a character well inside the decoded bytes (padding stays valid)
    position = len(text) // 2
    replacement = next(
        c for c in (B64 if text[position] in B64 else "0123456789xy") if c != text[position]
    )
    return text[:position] + replacement + text[position + 1 :]


def _set(data: Any, path: tuple[Any, ...], value: str) -> None:
    for key in path[:-1]:
        data = data[key]
    data[path[-1]] = value


@pytest.mark.parametrize("name", sorted(HAPPY))
def test_one_character_changed_in_any_field_fails(name: str) -> None:
    original = json.loads(case(name)[0].read_text(encoding="utf-8"))
    survivors = []
    for path, text in _leaves(original):
        data = copy.deepcopy(original)
        _set(data, path, _changed(text, path))
        try:
            verify(name, data)
        except BotError:
            continue
        survivors.append("/".join(map(str, path)))
    assert survivors == []


def test_rekor_v2_bundle_fails_without_the_timestamp_authority() -> None:
    bundle_path, _, artifact = case("v0.3-rekor2-dsse-0.0.2.sigstore.json")
    data = json.loads((SIGSTORE_JS / "trusted_root.json").read_text(encoding="utf-8"))
    data["timestampAuthorities"] = []
    bundle = parse_bundle(json.loads(bundle_path.read_text(encoding="utf-8")), source="x")
    with pytest.raises(VerificationFailed, match="RFC 3161 timestamp does not verify"):
        verify_bundle(bundle, parse_trusted_root(data, source="x"), label="x", artifact=artifact)


def _sigstore_js_release() -> PackageVersion:
    statement = json.loads(
        base64.b64decode(
            json.loads(NPM_BUNDLE.read_text(encoding="utf-8"))["dsseEnvelope"]["payload"]
        )
    )
    sha512 = bytes.fromhex(statement["subject"][0]["digest"]["sha512"])
    return PackageVersion(
        name="sigstore",
        version="3.1.0",
        dist=Dist(
            tarball="https://registry.npmjs.org/sigstore/-/sigstore-3.1.0.tgz",
            integrity="sha512-" + base64.b64encode(sha512).decode(),
            attestations_url="https://registry.npmjs.org/-/npm/v1/attestations/sigstore@3.1.0",
            provenance_predicate=SLSA_V1,
        ),
    )


def _npm_check(bundle: Any, policy: IdentityPolicy, manifest: PackageVersion | None = None) -> Any:
    keys = trusted_keys("https://registry.npmjs.org/", pinned={}, served=None)
    required: Policy = "required"
    return check_provenance(
        manifest or _sigstore_js_release(),
        (Attestation(SLSA_V1, bundle),),
        previous=None,
        policy=required,
        root=load_trusted_root(),
        identity_policy=policy,
        keys=keys,
    )


SIGSTORE_JS_RELEASES = IdentityPolicy(("sigstore/sigstore-js",), ref_prefix="refs/heads/main")


def test_real_npm_provenance_verifies_with_its_identity() -> None:
    result = _npm_check(json.loads(NPM_BUNDLE.read_text(encoding="utf-8")), SIGSTORE_JS_RELEASES)
    evidence = result.as_evidence()
    assert evidence["provenance"] == "verified"
    assert evidence["source_repository"] == "https://github.com/sigstore/sigstore-js"
    assert evidence["source_ref"] == "refs/heads/main"
    assert evidence["log_index"] == 168704762
    assert evidence["signed_at"] == datetime(2025, 2, 4, 20, 35, 47, tzinfo=UTC).isoformat()
    assert evidence["signer"] == (
        "https://github.com/sigstore/sigstore-js/.github/workflows/release.yml@refs/heads/main"
    )


def test_real_npm_provenance_refuses_another_identity() -> None:
    with pytest.raises(VerificationFailed, match="source repository"):
        _npm_check(
            json.loads(NPM_BUNDLE.read_text(encoding="utf-8")),
            IdentityPolicy(("lovell/sharp",), ref_prefix="refs/heads/main"),
        )


def test_real_npm_provenance_refuses_another_tarball() -> None:
    manifest = _sigstore_js_release()
    other = PackageVersion(
        name=manifest.name,
        version=manifest.version,
        dist=Dist(
            tarball=manifest.dist.tarball,
            integrity="sha512-" + base64.b64encode(hashlib.sha512(b"other").digest()).decode(),
            attestations_url=manifest.dist.attestations_url,
            provenance_predicate=SLSA_V1,
        ),
    )
    with pytest.raises(VerificationFailed, match="subject sha512 differs"):
        _npm_check(json.loads(NPM_BUNDLE.read_text(encoding="utf-8")), SIGSTORE_JS_RELEASES, other)


def test_real_npm_provenance_one_character_changed_fails() -> None:
    original = json.loads(NPM_BUNDLE.read_text(encoding="utf-8"))
    survivors = []
    for path, text in _leaves(original):
        data = copy.deepcopy(original)
        _set(data, path, _changed(text, path))
        try:
            _npm_check(data, SIGSTORE_JS_RELEASES)
        except BotError:
            continue
        survivors.append("/".join(map(str, path)))
    assert survivors == []


@pytest.mark.parametrize(
    "name", ["v0.3-rekor2-dsse-0.0.2.sigstore.json", "v0.3-rekor2-hashedrekord-0.0.2.sigstore.json"]
)
def test_shipped_root_verifies_production_rekor_v2_with_its_timestamp_authority(name: str) -> None:
    bundle_path, _, artifact = case(name)
    bundle = parse_bundle(json.loads(bundle_path.read_text(encoding="utf-8")), source=name)

    verified = verify_bundle(bundle, load_trusted_root(), label=name, artifact=artifact)

    assert verified.signed_at == datetime.fromisoformat(HAPPY[name][1])


def test_a_timestamp_from_a_tsa_the_root_does_not_trust_fails_even_beside_a_log_time() -> None:
    # sigstore-js's v0.1 bundles carry a timestamp from its local test TSA: the shipped
    # production root does not trust it, and an unverifiable timestamp is never ignored
    name = "v0.1-dsse-intoto-0.0.2.sigstore.json"
    bundle_path, _, artifact = case(name)
    bundle = parse_bundle(json.loads(bundle_path.read_text(encoding="utf-8")), source=name)

    with pytest.raises(VerificationFailed, match="RFC 3161 timestamp does not verify"):
        verify_bundle(bundle, load_trusted_root(), label=name, artifact=artifact)


# --- RFC 3161 timestamps ----------------------------------------------------------------------


def _with_timestamps(name: str, timestamps: list[str]) -> Any:
    data = json.loads(case(name)[0].read_text(encoding="utf-8"))
    data["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"] = [
        {"signedTimestamp": timestamp} for timestamp in timestamps
    ]
    return data


def _timestamp(name: str) -> str:
    data = json.loads(case(name)[0].read_text(encoding="utf-8"))
    timestamps = data["verificationMaterial"]["timestampVerificationData"]["rfc3161Timestamps"]
    return str(timestamps[0]["signedTimestamp"])


def test_thirty_two_timestamps_are_read_and_a_thirty_third_is_refused() -> None:
    timestamp = _timestamp(REKOR2)

    verified = verify(REKOR2, _with_timestamps(REKOR2, [timestamp] * 32))

    assert verified.signed_at == datetime.fromisoformat(HAPPY[REKOR2][1])
    with pytest.raises(
        VerificationFailed, match=failure(REKOR2, "the bundle carries more than 32 timestamps")
    ):
        verify(REKOR2, _with_timestamps(REKOR2, [timestamp] * 33))


def test_a_timestamp_that_is_not_a_der_response_fails() -> None:
    not_der = base64.b64encode(b"\x30\x03not a timestamp").decode()

    with pytest.raises(
        VerificationFailed,
        match=failure(REKOR2, "an RFC 3161 timestamp is not a DER TimeStampResponse"),
    ):
        verify(REKOR2, _with_timestamps(REKOR2, [_timestamp(REKOR2), not_der]))


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(lambda tsa: tsa.clear(), id="no authority"),
        # the leaf alone cannot anchor the chain: it is not self-signed
        pytest.param(lambda tsa: tsa[0]["certChain"]["certificates"].pop(), id="leaf only"),
        pytest.param(
            lambda tsa: tsa[0].update(validFor={"start": "2025-06-13T00:00:00Z"}),
            id="not yet valid at the timestamp",
        ),
    ],
)
def test_a_timestamp_without_an_authority_trusted_at_its_time_fails(
    change: Callable[[list[Any]], object],
) -> None:
    bundle_path, root_path, artifact = case(REKOR2)
    data = json.loads(root_path.read_text(encoding="utf-8"))
    change(data["timestampAuthorities"])
    bundle = parse_bundle(json.loads(bundle_path.read_text(encoding="utf-8")), source=REKOR2)

    with pytest.raises(VerificationFailed, match=failure(REKOR2, UNTRUSTED_TIMESTAMP)):
        verify_bundle(bundle, parse_trusted_root(data, source="x"), label=REKOR2, artifact=artifact)


# --- bundle shapes: each malformed field refused with a message naming it --------------------

NO_FIELD = object()


def _put(target: Any, key: str, value: object) -> None:
    if value is NO_FIELD:
        del target[key]
    else:
        target[key] = value


def _edit(locate: Callable[[Any], Any], key: str, value: object) -> Callable[[Any], None]:
    return lambda data: _put(locate(data), key, value)


def _bundle(data: Any) -> Any:
    return data


def _message(data: Any) -> Any:
    return data["messageSignature"]


def _certificates(data: Any) -> Any:
    return material(data)["x509CertificateChain"]


def _envelope(data: Any) -> Any:
    return data["dsseEnvelope"]


def _timestamps(data: Any) -> Any:
    return material(data).setdefault("timestampVerificationData", {})


NOT_BASE64 = "not base64!"
MALFORMED = {
    "media type": (V02, _edit(_bundle, "mediaType", "application/json"), "unsupported sigstore bundle media type 'application/json'"),
    "media type not text": (V02, _edit(_bundle, "mediaType", 3), "unsupported sigstore bundle media type 3"),
    "media type a list": (V02, _edit(_bundle, "mediaType", ["x"]), "unsupported sigstore bundle media type ['x']"),
    "no material": (V02, _edit(_bundle, "verificationMaterial", NO_FIELD), "bundle field verificationMaterial is missing"),
    "two contents": (V02, _edit(_bundle, "dsseEnvelope", {}), "a bundle holds exactly one of dsseEnvelope and messageSignature"),
    "no content": (V02, _edit(_bundle, "messageSignature", NO_FIELD), "a bundle holds exactly one of dsseEnvelope and messageSignature"),
    "timestamp data": (V02, _edit(material, "timestampVerificationData", "x"), "bundle field timestampVerificationData is missing"),
    "timestamps": (V02, _edit(_timestamps, "rfc3161Timestamps", {"0": {}}), "bundle tlogEntries and timestamps must be lists"),
    "timestamp": (V02, _edit(_timestamps, "rfc3161Timestamps", ["x"]), "bundle field rfc3161Timestamps[] is missing"),
    "signed timestamp": (V02, _edit(_timestamps, "rfc3161Timestamps", [{}]), "bundle field signedTimestamp is missing"),
    "entries": (V02, _edit(material, "tlogEntries", {"0": {}}), "bundle tlogEntries and timestamps must be lists"),
    "entry": (V02, _edit(material, "tlogEntries", ["x"]), "bundle field tlogEntries[] is missing"),
    "kind": (V02, _edit(tlog, "kindVersion", NO_FIELD), "bundle field kindVersion is missing"),
    "index": (V02, _edit(tlog, "logIndex", "-1"), "bundle field logIndex is not a non-negative integer"),
    "negative index": (V02, _edit(tlog, "logIndex", -1), "bundle field logIndex is not a non-negative integer"),
    "boolean index": (V02, _edit(tlog, "logIndex", True), "bundle field logIndex is not a non-negative integer"),
    "log id": (V02, _edit(tlog, "logId", NO_FIELD), "bundle field logId is missing"),
    "log key id": (V02, _edit(tlog, "logId", {"keyId": NOT_BASE64}), "bundle field logId is not base64"),
    "time": (V02, _edit(tlog, "integratedTime", "soon"), "bundle field integratedTime is not a non-negative integer"),
    "body": (V02, _edit(tlog, "canonicalizedBody", NO_FIELD), "bundle field canonicalizedBody is missing"),
    "promise": (V02, _edit(tlog, "inclusionPromise", {}), "bundle field signedEntryTimestamp is missing"),
    "proof": (V02, _edit(tlog, "inclusionProof", "x"), "bundle field inclusionProof is missing"),
    "checkpoint": (V02, _edit(proof, "checkpoint", NO_FIELD), "bundle field checkpoint is missing"),
    "checkpoint note": (V02, _edit(proof, "checkpoint", {"envelope": 1}), "inclusion proof has no checkpoint"),
    "hashes": (V02, _edit(proof, "hashes", "x"), "bundle field inclusionProof.hashes is not a list"),
    "hash": (V02, _edit(proof, "hashes", [NOT_BASE64]), "bundle field inclusionProof.hashes is not base64"),
    "proof index": (V02, _edit(proof, "logIndex", "x"), "bundle field inclusionProof.logIndex is not a non-negative integer"),
    "root hash": (V02, _edit(proof, "rootHash", NOT_BASE64), "bundle field rootHash is not base64"),
    "root hash stray character": (V02, _edit(proof, "rootHash", "QUJD!"), "bundle field rootHash is not base64"),
    "tree size": (V02, _edit(proof, "treeSize", NO_FIELD), "bundle field treeSize is not a non-negative integer"),
    "v0.2 single certificate": (V02, _edit(material, "certificate", {}), "a v0.2 bundle carries no single certificate"),
    "chain": (V02, _edit(material, "x509CertificateChain", "x"), "bundle field x509CertificateChain is missing"),
    "empty chain": (V02, _edit(_certificates, "certificates", []), "the bundle's certificate chain is empty"),
    "chain entry": (V02, _edit(_certificates, "certificates", ["x"]), "bundle field certificate is missing"),
    "certificate base64": (V02, _edit(_certificates, "certificates", [{"rawBytes": NOT_BASE64}]), "bundle field certificate is not base64"),
    "certificate bytes": (V02, _edit(_certificates, "certificates", [{"rawBytes": "AAAA"}]), "bundle certificate is not DER X.509"),
    "v0.3 chain": (V03_DSSE, _edit(material, "x509CertificateChain", {}), "a v0.3 bundle must not carry a certificate chain"),
    "message": (V02, _edit(_bundle, "messageSignature", "x"), "bundle field messageSignature is missing"),
    "digest": (V02, _edit(_message, "messageDigest", NO_FIELD), "bundle field messageDigest is missing"),
    "digest algorithm": (V02, lambda data: _message(data)["messageDigest"].update(algorithm="SHA2_512"), "message digest algorithm 'SHA2_512' is not SHA2_256"),
    "digest value": (V02, lambda data: _message(data)["messageDigest"].pop("digest"), "bundle field messageDigest.digest is missing"),
    "message signature": (V02, _edit(_message, "signature", NO_FIELD), "bundle field messageSignature.signature is missing"),
    "envelope": (V03_DSSE, _edit(_bundle, "dsseEnvelope", "x"), "bundle field dsseEnvelope is missing"),
    "envelope signatures": (V03_DSSE, _edit(_envelope, "signatures", NO_FIELD), "bundle field dsseEnvelope.signatures is missing"),
    "payload type": (V03_DSSE, _edit(_envelope, "payloadType", NO_FIELD), "bundle field dsseEnvelope.payloadType is missing"),
    "payload": (V03_DSSE, _edit(_envelope, "payload", NOT_BASE64), "bundle field payload is not base64"),
    "envelope signature": (V03_DSSE, _edit(_envelope, "signatures", ["x"]), "bundle field signatures[] is missing"),
    "envelope sig": (V03_DSSE, _edit(_envelope, "signatures", [{}]), "bundle field sig is missing"),
}  # fmt: skip


@pytest.mark.parametrize("which", sorted(MALFORMED))
def test_a_malformed_bundle_is_refused_naming_the_field(which: str) -> None:
    name, change, reason = MALFORMED[which]
    data = json.loads(case(name)[0].read_text(encoding="utf-8"))
    change(data)

    with pytest.raises(InvalidRemoteData, match="^" + re.escape(f"{name}: {reason}") + "$"):
        parse_bundle(data, source=name)


def test_a_bundle_that_is_not_an_object_is_refused() -> None:
    with pytest.raises(InvalidRemoteData, match="^x: bundle field bundle is missing$"):
        parse_bundle([], source="x")


@pytest.mark.parametrize("index", [0, "0", 27246492, "27246492"])
def test_a_log_index_is_a_json_number_or_a_decimal_string_from_zero(index: int | str) -> None:
    data = json.loads(case(V02)[0].read_text(encoding="utf-8"))
    tlog(data)["logIndex"] = index

    assert parse_bundle(data, source=V02).tlog_entries[0].log_index == int(index)


def test_a_certificate_signed_when_no_trusted_ca_was_valid_fails() -> None:
    # Fulcio's CA must be valid at the signing time, whatever the certificate itself claims
    name = "happy-path-v0.3"
    bundle_path, root_path, artifact = case(name)
    data = json.loads(root_path.read_text(encoding="utf-8"))
    for authority in data["certificateAuthorities"]:
        authority["validFor"] = {"start": "2024-03-20T00:00:00Z"}
    bundle = parse_bundle(json.loads(bundle_path.read_text(encoding="utf-8")), source=name)

    with pytest.raises(
        VerificationFailed,
        match=failure(name, "no trusted certificate authority was valid at the signing time"),
    ):
        verify_bundle(bundle, parse_trusted_root(data, source="x"), label=name, artifact=artifact)


@pytest.mark.parametrize(
    ("name", "change_bundle", "change_root", "reason"),
    [
        (
            REKOR2,
            lambda data: proof(data).update(logIndex=str(int(proof(data)["logIndex"]) + 1)),
            None,
            "the inclusion proof is for another log index than the entry",
        ),
        (
            V01,
            lambda data: tlog(data).pop("inclusionPromise"),
            None,
            "the log entry has no inclusion promise, so no trusted signing time",
        ),
        (
            V02,
            lambda data: tlog(data)["kindVersion"].update(version="0.0.9"),
            None,
            "unsupported log entry type hashedrekord/0.0.9",
        ),
        (
            V02,
            None,
            lambda root: [
                log["publicKey"].update(validFor={"start": "2030-01-01T00:00:00Z"})
                for log in root["tlogs"]
            ],
            "the log key was not valid at the entry's integrated time",
        ),
        (
            V02,
            None,
            lambda root: [log["logId"].update(keyId="A" * 43 + "=") for log in root["tlogs"]],
            "the bundle's transparency log is not in the trusted root",
        ),
    ],
    ids=["v2-proof-index", "v0.1-no-promise", "unknown-kind", "log-key-validity", "unknown-log"],
)
def test_a_log_entry_the_root_cannot_vouch_for_fails(
    name: str,
    change_bundle: Callable[[Any], object] | None,
    change_root: Callable[[Any], object] | None,
    reason: str,
) -> None:
    bundle_path, root_path, artifact = case(name)
    data = json.loads(bundle_path.read_text(encoding="utf-8"))
    root = json.loads(root_path.read_text(encoding="utf-8"))
    if change_bundle:
        change_bundle(data)
    if change_root:
        change_root(root)
    bundle = parse_bundle(data, source=name)

    with pytest.raises(VerificationFailed, match=failure(name, reason)):
        verify_bundle(bundle, parse_trusted_root(root, source="x"), label=name, artifact=artifact)
