"""Provenance: sigstore bundles built with roots generated here (Fulcio-like CA with SCTs, a
Rekor-like log with promises, inclusion proofs and checkpoints), verified offline; then the
`verify-provenance` step against a real signing registry on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from bot.config import Policy
from bot.errors import InvalidRemoteData, ServiceUnavailable, VerificationFailed
from bot.publish import render_body
from bot.sources.http import HttpSource
from bot.sources.npm.models import Dist, PackageVersion
from bot.sources.npm.settings import NpmSettings
from bot.steps.registry import get_step
from bot.verify.provenance import (
    ATTESTATIONS_LIMIT,
    SLSA_PREDICATES,
    Attestation,
    ProvenanceCheck,
    check_provenance,
    check_statement,
    fetch_attestations,
    package_purl,
    parse_attestations,
    verify_publish_attestation,
    verify_slsa_provenance,
)
from bot.verify.provenance import (
    IN_TOTO_PAYLOAD_TYPE as IN_TOTO,
)
from bot.verify.signatures import TrustedKeys, parse_keys, trusted_keys
from bot.verify.sigstore import (
    GITHUB_ACTIONS_ISSUER as GITHUB_ISSUER,
)
from bot.verify.sigstore import (
    TRUSTED_ROOT_FILE,
    Envelope,
    Identity,
    IdentityPolicy,
    TrustedRoot,
    certificate_identity,
    check_entry_body,
    load_trusted_root,
    parse_bundle,
    parse_trusted_root,
    trusted_root_for,
)
from bot.verify.sigstore.tlog import root_from_inclusion_proof
from tests.support.processes import free_port
from tests.support.signing_registry import (
    PUBLISH_V01,
    SLSA_V1,
    RegistryKeyPair,
    SigningRegistry,
    TestSigstore,
    _merkle_path,
    _merkle_root,
    der_utf8,
    extension_certificate,
    keys_document,
    start_signing_registry,
)
from tests.support.step_context import make_context, rotation_for

NAME = "@img/sharp-linux-x64"
INTEGRITY = "sha512-" + base64.b64encode(hashlib.sha512(b"sharp binary").digest()).decode()
SHARP = IdentityPolicy(("lovell/sharp", "lovell/sharp-libvips"))


@pytest.fixture(scope="module")
def sigstore() -> TestSigstore:
    return TestSigstore()


@pytest.fixture(scope="module")
def root(sigstore: TestSigstore) -> TrustedRoot:
    return parse_trusted_root(sigstore.trusted_root(), source="test root")


@pytest.fixture(scope="module")
def registry_key() -> RegistryKeyPair:
    return RegistryKeyPair()


@pytest.fixture(scope="module")
def keys(registry_key: RegistryKeyPair) -> TrustedKeys:
    served = parse_keys(keys_document(registry_key.entry()), source="test")
    return trusted_keys("https://registry.example/", pinned={}, served=served)


def version(v: str = "0.33.5", *, announced: bool = True) -> PackageVersion:
    attestations = f"https://registry.example/-/npm/v1/attestations/{NAME}@{v}"
    return PackageVersion(
        name=NAME,
        version=v,
        dist=Dist(
            tarball="https://registry.example/x.tgz",
            integrity=INTEGRITY,
            attestations_url=attestations if announced else None,
            provenance_predicate=SLSA_V1 if announced else None,
        ),
    )


def attestations(
    sigstore: TestSigstore,
    registry_key: RegistryKeyPair | None,
    *,
    v: str = "0.33.5",
    bundle: Mapping[str, Any] | None = None,
    **options: Any,
) -> tuple[Attestation, ...]:
    found = [
        Attestation(SLSA_V1, bundle or sigstore.provenance_bundle(NAME, v, INTEGRITY, **options))
    ]
    if registry_key is not None:
        found.append(
            Attestation(PUBLISH_V01, sigstore.publish_bundle(NAME, v, INTEGRITY, registry_key))
        )
    return tuple(found)


def check(
    found: tuple[Attestation, ...] | None,
    root: TrustedRoot,
    keys: TrustedKeys,
    *,
    manifest: PackageVersion | None = None,
    previous: PackageVersion | None = None,
    policy: Policy = "if-published",
) -> ProvenanceCheck:
    return check_provenance(
        manifest or version(),
        found,
        previous=previous,
        policy=policy,
        root=root,
        identity_policy=SHARP,
        keys=keys,
    )


def test_present_provenance_verifies_with_identity_in_evidence(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, registry_key: RegistryKeyPair
) -> None:
    result = check(attestations(sigstore, registry_key), root, keys, policy="required")

    assert result.facts is not None
    assert result.as_evidence() == {
        "name": NAME,
        "version": "0.33.5",
        "policy": "required",
        "provenance": "verified",
        "verified": True,
        "publish_attestation": "verified",
        "previous_version": None,
        "previous_had_provenance": False,
        "issuer": "https://token.actions.githubusercontent.com",
        "source_repository": "https://github.com/lovell/sharp",
        "source_ref": "refs/tags/v0.33.5",
        "signer": "https://github.com/lovell/sharp/.github/workflows/release.yml@refs/tags/v0.33.5",
        "log_index": 1005,
        "signed_at": result.facts.signed_at.isoformat(),
        "notes": [],
    }


def test_absent_provenance_evidence_says_so_field_by_field(
    root: TrustedRoot, keys: TrustedKeys
) -> None:
    result = check(None, root, keys, manifest=version(announced=False))

    assert result.as_evidence() == {
        "name": NAME,
        "version": "0.33.5",
        "policy": "if-published",
        "provenance": "absent",
        "verified": False,
        "publish_attestation": "absent",
        "previous_version": None,
        "previous_had_provenance": False,
        "issuer": None,
        "source_repository": None,
        "source_ref": None,
        "signer": None,
        "log_index": None,
        "signed_at": None,
        "notes": [],
    }


def test_libvips_repository_is_allowed(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys
) -> None:
    found = attestations(sigstore, None, repository="lovell/sharp-libvips", ref="refs/tags/v8.15.3")

    assert check(found, root, keys).status == "verified"


NOT_ALLOWED = "the provenance signer is not allowed: "


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        (
            {"repository": "mallory/sharp"},
            NOT_ALLOWED + "source repository 'https://github.com/mallory/sharp' is not one of "
            "lovell/sharp, lovell/sharp-libvips",
        ),
        (
            {"ref": "refs/heads/main"},
            NOT_ALLOWED + "ref 'refs/heads/main' is not a refs/tags/* ref",
        ),
        (
            {"issuer": "https://gitlab.com"},
            NOT_ALLOWED + "issuer 'https://gitlab.com' is not "
            "https://token.actions.githubusercontent.com",
        ),
        (
            {"subject_sha512": "00" * 64},
            "the statement's subject sha512 differs from the tarball's integrity",
        ),
        (
            {"subject_name": package_purl("@img/sharp-linuxmusl-x64", "0.33.5")},
            "the statement's subject is 'pkg:npm/%40img/sharp-linuxmusl-x64@0.33.5', not "
            "pkg:npm/%40img/sharp-linux-x64@0.33.5",
        ),
        (
            {"repository": "mallory/sharp", "ref": "refs/heads/main"},
            NOT_ALLOWED + "source repository 'https://github.com/mallory/sharp' is not one of "
            "lovell/sharp, lovell/sharp-libvips; ref 'refs/heads/main' is not a refs/tags/* ref",
        ),
        ({"with_sct": False}, "the signing certificate carries no SCT"),
        (
            {"digital_signature": None},
            "the signing certificate lacks key usage extensions",
        ),
        ({"extended_usage": ()}, "the signing certificate lacks key usage extensions"),
        ({"digital_signature": False}, "the signing certificate is not for code signing"),
        (
            {"extended_usage": (ExtendedKeyUsageOID.EMAIL_PROTECTION,)},
            "the signing certificate is not for code signing",
        ),
    ],
    ids=[
        "wrong-repo",
        "branch-ref",
        "wrong-issuer",
        "wrong-digest",
        "wrong-subject",
        "wrong-repo-and-ref",
        "no-sct",
        "no-key-usage",
        "no-extended-usage",
        "no-digital-signature",
        "not-code-signing",
    ],
)
def test_provenance_that_does_not_match_fails(
    sigstore: TestSigstore,
    root: TrustedRoot,
    keys: TrustedKeys,
    options: dict[str, Any],
    reason: str,
) -> None:
    with pytest.raises(VerificationFailed, match=failed(reason)) as caught:
        check(attestations(sigstore, None, **options), root, keys)

    assert caught.value.fields["package"] == f"{NAME}@0.33.5"


def failed(reason: str, version: str = "0.33.5") -> str:
    """The whole message of a failed provenance check of NAME@version, as a regex."""
    return "^" + re.escape(f"provenance check failed for {NAME}@{version}: {reason};")


def test_absent_provenance_is_recorded_under_if_published_and_fails_under_required(
    root: TrustedRoot, keys: TrustedKeys
) -> None:
    bare = version(announced=False)

    assert check(None, root, keys, manifest=bare).status == "absent"
    off = check(None, root, keys, manifest=bare, policy="off")
    assert (off.status, off.publish_attestation) == ("off", "off")
    with pytest.raises(
        VerificationFailed, match=failed("policy requires provenance and this version has none")
    ):
        check(None, root, keys, manifest=bare, policy="required")


def test_losing_provenance_the_previous_version_had_is_a_downgrade(
    root: TrustedRoot, keys: TrustedKeys
) -> None:
    with pytest.raises(
        VerificationFailed,
        match=failed("0.33.4 had provenance and this version has none (no downgrade)"),
    ):
        check(None, root, keys, manifest=version(announced=False), previous=version("0.33.4"))

    unproven_before = check(
        None,
        root,
        keys,
        manifest=version(announced=False),
        previous=version("0.33.4", announced=False),
    )
    assert unproven_before.status == "absent" and not unproven_before.previous_had_provenance


def test_announced_but_not_served_fails(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, registry_key: RegistryKeyPair
) -> None:
    with pytest.raises(
        VerificationFailed,
        match=failed("the packument announces attestations but the registry serves none"),
    ):
        check(None, root, keys)
    publish_only = attestations(sigstore, registry_key)[1:]
    with pytest.raises(
        VerificationFailed,
        match=failed("the packument announces SLSA provenance but none is served"),
    ):
        check(publish_only, root, keys)


def test_bundle_from_another_sigstore_does_not_chain(root: TrustedRoot, keys: TrustedKeys) -> None:
    with pytest.raises(VerificationFailed, match="transparency log is not in the trusted root"):
        check(attestations(TestSigstore(), None), root, keys)


def _tampered(sigstore: TestSigstore, change: Any) -> dict[str, Any]:
    bundle = copy.deepcopy(sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY))
    change(bundle)
    return bundle


def _entry(bundle: dict[str, Any]) -> dict[str, Any]:
    entry: dict[str, Any] = bundle["verificationMaterial"]["tlogEntries"][0]
    return entry


def _swap_payload(bundle: dict[str, Any]) -> None:
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"]["note"] = "rewritten"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()


def _later_time(bundle: dict[str, Any]) -> None:
    _entry(bundle)["integratedTime"] = str(int(_entry(bundle)["integratedTime"]) + 60)


def _bad_proof(bundle: dict[str, Any]) -> None:
    _entry(bundle)["inclusionProof"]["hashes"][0] = base64.b64encode(b"\0" * 32).decode()


def _bad_checkpoint(bundle: dict[str, Any]) -> None:
    proof = _entry(bundle)["inclusionProof"]
    proof["checkpoint"]["envelope"] = proof["checkpoint"]["envelope"].replace(
        "rekor.test - 42", "rekor.test - 43", 1
    )


def _drop_promise(bundle: dict[str, Any]) -> None:
    del _entry(bundle)["inclusionPromise"]


def _drop_proof(bundle: dict[str, Any]) -> None:
    del _entry(bundle)["inclusionProof"]


def _checkpoint_note(change: Any) -> Any:
    def tamper(bundle: dict[str, Any]) -> None:
        checkpoint = _entry(bundle)["inclusionProof"]["checkpoint"]
        checkpoint["envelope"] = change(checkpoint["envelope"])

    return tamper


def _note_line(index: int, value: str) -> Any:
    def change(text: str) -> str:
        note, _, signatures = text.partition("\n\n")
        lines = note.split("\n")
        lines[index] = value
        return "\n".join(lines) + "\n\n" + signatures

    return _checkpoint_note(change)


NO_TIME = "no trusted signing time: the log entry has no signed entry timestamp and the bundle no "
NO_TIME += "RFC 3161 timestamp"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_swap_payload, "the envelope's signature does not verify"),
        (_later_time, "the log's signed entry timestamp does not verify"),
        (_bad_proof, "the inclusion proof does not lead to the recorded root"),
        (_bad_checkpoint, "the checkpoint carries no valid signature by the log"),
        (_drop_promise, NO_TIME),
        (_drop_proof, "the log entry has no inclusion proof"),
        (
            _checkpoint_note(lambda text: text.partition("\n\n")[0]),
            "the checkpoint has no signature block",
        ),
        (
            _checkpoint_note(lambda text: text.replace("\n", "\n\n", 1)),
            "the checkpoint lacks an origin, a size or a root hash",
        ),
        (_note_line(1, "99999"), "the checkpoint names another tree size than the proof"),
        (_note_line(2, "abc"), "the checkpoint's root hash is not base64"),
        (_note_line(2, "AAAA"), "the checkpoint names another root than the proof"),
    ],
    ids=[
        "payload",
        "log-time",
        "inclusion-proof",
        "checkpoint",
        "no-promise",
        "no-proof",
        "unsigned-checkpoint",
        "short-checkpoint",
        "checkpoint-size",
        "checkpoint-root-not-base64",
        "checkpoint-root",
    ],
)
def test_tampered_bundles_fail(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, change: Any, reason: str
) -> None:
    with pytest.raises(VerificationFailed, match=failed(reason)):
        check(attestations(sigstore, None, bundle=_tampered(sigstore, change)), root, keys)


def test_log_entry_for_another_envelope_fails(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys
) -> None:
    """A genuine log entry re-used with another (validly signed) envelope is caught."""
    mine = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY)
    other = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY)
    mine["dsseEnvelope"] = other["dsseEnvelope"]
    mine["verificationMaterial"]["x509CertificateChain"] = other["verificationMaterial"][
        "x509CertificateChain"
    ]

    with pytest.raises(VerificationFailed, match="records other signatures or another signer"):
        check(attestations(sigstore, None, bundle=mine), root, keys)


def _relogged(sigstore: TestSigstore, change: Any) -> dict[str, Any]:
    """A provenance bundle whose log entry body `change` rewrites and the log then logs anew:
    the log vouches for whatever it is given, so the body must still match the bundle."""
    bundle = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY)
    entry = _entry(bundle)
    body = json.loads(base64.b64decode(entry["canonicalizedBody"]))
    change(body)
    when = datetime.fromtimestamp(int(entry["integratedTime"]), UTC)
    logged = sigstore.logged(json.dumps(body, sort_keys=True).encode(), when)
    bundle["verificationMaterial"]["tlogEntries"] = [logged]
    return bundle


def _other_payload_type(body: dict[str, Any]) -> None:
    body["spec"]["content"]["envelope"]["payloadType"] = "application/json"


def _message_entry(body: dict[str, Any]) -> None:
    body.update(
        kind="hashedrekord",
        apiVersion="0.0.1",
        spec={
            "data": {"hash": {"algorithm": "sha256", "value": "0" * 64}},
            "signature": {"content": "", "publicKey": {"content": ""}},
        },
    )


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (_other_payload_type, "the log entry records another payload type"),
        (_message_entry, "a hashedrekord log entry cannot record this bundle's content"),
        (lambda body: body.pop("spec"), "the log entry body is malformed"),
    ],
    ids=["payload-type", "message-entry-for-an-envelope", "no-spec"],
)
def test_a_logged_body_that_does_not_describe_the_envelope_fails(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, change: Any, reason: str
) -> None:
    bundle = _relogged(sigstore, change)

    with pytest.raises(VerificationFailed, match=failed(reason)):
        check(attestations(sigstore, None, bundle=bundle), root, keys)


def test_an_entry_whose_body_is_of_another_kind_than_it_claims_fails(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys
) -> None:
    # the kind beside the entry is not signed by the log; the body's own kind is
    bundle = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY)
    _entry(bundle)["kindVersion"] = {"kind": "dsse", "version": "0.0.1"}

    with pytest.raises(
        VerificationFailed, match=failed("the log entry body disagrees with its kind and version")
    ):
        check(attestations(sigstore, None, bundle=bundle), root, keys)


def test_publish_attestation_by_an_unknown_key_fails(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys
) -> None:
    other = RegistryKeyPair()
    with pytest.raises(
        VerificationFailed,
        match=failed(f"the publish attestation names unknown key {other.keyid!r}"),
    ):
        check(attestations(sigstore, other), root, keys)


def test_publish_attestation_without_registry_keys_is_not_verifiable_under_if_published(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair
) -> None:
    no_keys = trusted_keys("https://registry.example/", pinned={}, served=None)

    result = check(attestations(sigstore, registry_key), root, no_keys)

    assert (result.status, result.publish_attestation) == ("verified", "not verifiable")
    assert result.notes == (
        "https://registry.example publishes no keys for the publish attestation",
    )


@pytest.mark.parametrize("size", range(1, 10))
def test_inclusion_proofs_lead_to_the_rfc6962_root(size: int) -> None:
    leaves = [hashlib.sha256(bytes([i])).digest() for i in range(size)]
    root_hash = _merkle_root(leaves)
    for index in range(size):
        path = _merkle_path(index, leaves)
        assert root_from_inclusion_proof(index, size, leaves[index], path) == root_hash
        if path:
            forged = [bytes(32), *path[1:]]
            assert root_from_inclusion_proof(index, size, leaves[index], forged) != root_hash
        if index ^ 1 < size:
            assert root_from_inclusion_proof(index ^ 1, size, leaves[index], path) != root_hash
    assert root_from_inclusion_proof(size, size, leaves[0], []) is None


def test_shipped_trusted_root_is_sigstore_public_good() -> None:
    shipped = load_trusted_root(TRUSTED_ROOT_FILE)

    assert base64.b64encode(shipped.tlogs[0].log_id).decode() == (
        "wNI9atQGlz+VWfO6LRygH4QUfY/8W4RFwiT5i5WRgB0="
    )
    assert shipped.authorities and shipped.ctlogs


def test_state_dir_trusted_root_replaces_the_shipped_one(
    tmp_path: Path, sigstore: TestSigstore
) -> None:
    sigstore.write_trusted_root(tmp_path / "trust" / "sigstore-trusted-root.json")

    assert trusted_root_for(tmp_path).tlogs[0].log_id == sigstore.rekor_log_id


# --- the step against a real signing registry ------------------------------------------------


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningRegistry]:
    registry = start_signing_registry(tmp_path_factory.mktemp("signing"))
    try:
        linux = {"os": ["linux"], "cpu": ["x64"], "libc": ["glibc"]}
        for v in ("0.33.4", "0.33.5"):
            registry.publish("sharp", v, provenance={})
            registry.publish(NAME, v, extra=linux, provenance={})
        registry.publish(
            "@img/sharp-libvips-linux-x64",
            "1.0.4",
            extra=linux,
            provenance={"repository": "lovell/sharp-libvips", "ref": "refs/tags/v1.0.4"},
        )
        registry.publish("sharp", "0.33.6", provenance={})
        registry.publish(NAME, "0.33.6", extra=linux)  # provenance lost
        registry.publish("sharp", "0.33.7", provenance={"repository": "mallory/sharp"})
        yield registry
    finally:
        registry.stop()


def _trusting(tmp_path: Path, signing: SigningRegistry) -> None:
    signing.sigstore.write_trusted_root(tmp_path / "state" / "trust" / "sigstore-trusted-root.json")


def test_step_verifies_every_pinned_package(tmp_path: Path, signing: SigningRegistry) -> None:
    _trusting(tmp_path, signing)
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for(
            "0.33.5", {NAME: ("0.33.4", "0.33.5"), "@img/sharp-libvips-linux-x64": (None, "1.0.4")}
        ),
    )

    result = get_step("verify-provenance")(ctx)

    assert result.status == "passed"
    assert result.summary == (
        "provenance: verified for 3 of 3 packages, 0 without (policy if-published)"
    )
    assert ctx.outputs.provenance is not None
    assert [
        (check.name, check.as_evidence()["source_repository"], check.publish_attestation)
        for check in ctx.outputs.provenance.provenance
    ] == [
        ("sharp", "https://github.com/lovell/sharp", "verified"),
        (NAME, "https://github.com/lovell/sharp", "verified"),
        ("@img/sharp-libvips-linux-x64", "https://github.com/lovell/sharp-libvips", "verified"),
    ]


def test_attestations_are_fetched_with_the_registry_credentials(signing: SigningRegistry) -> None:
    url = signing.attestations_url(NAME, "0.33.5")
    nerf = signing.url.removeprefix("http:")
    signing.require_token("s3cret")
    try:
        with_token = NpmSettings(
            registry=signing.url, credentials=((nerf, "_authToken", "s3cret"),)
        )
        found = fetch_attestations(url, HttpSource(attempts=1), with_token)
        assert found is not None
        assert [item.predicate_type for item in found] == [PUBLISH_V01, SLSA_V1]
        assert signing.last_accept == "application/json"

        with pytest.raises(ServiceUnavailable) as caught:
            fetch_attestations(url, HttpSource(attempts=1), NpmSettings(registry=signing.url))
        assert caught.value.message == (
            f"{signing.url[:-1]} refused access to attestations (HTTP 401); check the registry "
            "token in the operator's npm settings (NPM_CONFIG_USERCONFIG)"
        )
    finally:
        signing.require_token(None)
    assert (
        fetch_attestations(url.replace("0.33.5", "9.9.9"), HttpSource(attempts=1), NpmSettings())
        is None
    )


def test_a_malformed_attestations_document_is_named_by_its_registry(
    signing: SigningRegistry,
) -> None:
    signing.serve_attestations(NAME, "0.0.2", [1])
    try:
        with pytest.raises(InvalidRemoteData) as caught:
            fetch_attestations(
                signing.attestations_url(NAME, "0.0.2"), HttpSource(attempts=1), NpmSettings()
            )
        assert caught.value.message == (
            f"{signing.url[:-1]} attestations: an attestation has no predicateType"
        )
    finally:
        signing.serve_attestations(NAME, "0.0.2", None)


def test_an_attestations_document_over_the_cap_is_refused(signing: SigningRegistry) -> None:
    bundle = {"padding": "x" * ATTESTATIONS_LIMIT}
    signing.serve_attestations(NAME, "0.0.1", [{"predicateType": SLSA_V1, "bundle": bundle}])
    try:
        with pytest.raises(InvalidRemoteData) as caught:
            fetch_attestations(
                signing.attestations_url(NAME, "0.0.1"), HttpSource(attempts=1), NpmSettings()
            )
        assert re.fullmatch(
            re.escape(signing.url[:-1]) + r" sent \d+ bytes, over the 8388608-byte cap",
            caught.value.message,
        )
    finally:
        signing.serve_attestations(NAME, "0.0.1", None)


def test_step_blocks_a_downgrade(tmp_path: Path, signing: SigningRegistry) -> None:
    _trusting(tmp_path, signing)
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for("0.33.6", {NAME: ("0.33.5", "0.33.6")}, previous_version="0.33.5"),
    )

    with pytest.raises(VerificationFailed, match="no downgrade") as caught:
        get_step("verify-provenance")(ctx)

    assert f"{NAME}@0.33.6" in caught.value.message
    assert [e["name"] for e in caught.value.fields["provenance"]] == ["sharp"]


def test_step_rejects_a_foreign_repository(tmp_path: Path, signing: SigningRegistry) -> None:
    _trusting(tmp_path, signing)
    ctx = make_context(tmp_path, signing.url, rotation_for("0.33.7", {}))

    with pytest.raises(VerificationFailed, match="mallory/sharp"):
        get_step("verify-provenance")(ctx)


def test_step_with_the_shipped_root_rejects_test_signed_provenance(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    ctx = make_context(tmp_path, signing.url, rotation_for("0.33.5", {}))

    with pytest.raises(VerificationFailed, match="transparency log is not in the trusted root"):
        get_step("verify-provenance")(ctx)


def test_step_off_records_the_policy(tmp_path: Path, signing: SigningRegistry) -> None:
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for("0.33.7", {}),
        config="version: 1\nverify:\n  provenance: 'off'\n",
    )

    result = get_step("verify-provenance")(ctx)

    assert result.status == "skipped" and result.summary == "provenance: off (policy off)"
    assert result.evidence == {"policy": "off"} and ctx.outputs.provenance is None


def test_proposal_shows_what_each_package_proved(tmp_path: Path, signing: SigningRegistry) -> None:
    _trusting(tmp_path, signing)
    rotation = rotation_for(
        "0.33.5", {NAME: ("0.33.4", "0.33.5"), "@img/sharp-libvips-linux-x64": (None, "1.0.4")}
    )
    ctx = make_context(tmp_path, signing.url, rotation)
    results = [
        replace(get_step(kind)(ctx), kind=kind)
        for kind in ("verify-signatures", "verify-provenance")
    ]

    body = render_body(ctx.runbook, rotation, ctx.outputs, results, "0123456789abcdef")

    keyid = signing.signer.keyid
    section = body[body.index("### Verification") : body.index("### Runbook steps")]
    assert section.splitlines()[2:7] == [
        "| Package | Integrity | Registry signature | Provenance |",
        "| --- | --- | --- | --- |",
        "| `sharp` | not checked: `verify-tarballs` did not run | ✓ key "
        f"`{keyid}` | ✓ `lovell/sharp`, workflow `.github/workflows/release.yml`, tag "
        "`v0.33.5`, Rekor log index 1005 |",
        f"| `{NAME}` | not checked: `verify-tarballs` did not run | ✓ key `{keyid}` | ✓ "
        "`lovell/sharp`, workflow `.github/workflows/release.yml`, tag `v0.33.5`, Rekor log "
        "index 1005 |",
        "| `@img/sharp-libvips-linux-x64` | not checked: `verify-tarballs` did not run | ✓ key "
        f"`{keyid}` | ✓ `lovell/sharp-libvips`, workflow `.github/workflows/release.yml`, tag "
        "`v1.0.4`, Rekor log index 1005 |",
    ]


def _statement(**changes: Any) -> bytes:
    statement: dict[str, Any] = {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": package_purl(NAME, "0.33.5"), "digest": {"sha512": _hex()}}],
        "predicateType": SLSA_V1,
        "predicate": {"buildDefinition": {}},
    }
    statement.update(changes)
    return json.dumps(statement).encode()


def _hex() -> str:
    return base64.b64decode(INTEGRITY.removeprefix("sha512-")).hex()


@pytest.mark.parametrize(
    ("payload_type", "payload", "reason"),
    [
        ("text/plain", _statement(), "the envelope holds 'text/plain', not in-toto"),
        (IN_TOTO, b"{not json", "the attestation payload is not JSON"),
        (IN_TOTO, b"[]", "the attestation payload is not an in-toto statement"),
        (
            IN_TOTO,
            _statement(_type="https://example/v9"),
            "the attestation payload is not an in-toto statement",
        ),
        (
            IN_TOTO,
            _statement(predicateType="https://slsa.dev/provenance/v9"),
            "the statement's predicate is 'https://slsa.dev/provenance/v9'",
        ),
        (IN_TOTO, _statement(subject=[]), "the statement must have exactly one subject"),
        (IN_TOTO, _statement(subject=["pkg"]), "the statement must have exactly one subject"),
        (IN_TOTO, _statement(subject={"name": "x"}), "the statement must have exactly one subject"),
        (
            IN_TOTO,
            _statement(subject=[{"name": "pkg:npm/sharp@0.33.5", "digest": {}}]),
            "the statement's subject is 'pkg:npm/sharp@0.33.5', not pkg:npm/%40img/sharp-linux-x64@0.33.5",
        ),
        (
            IN_TOTO,
            _statement(subject=[{"name": package_purl(NAME, "0.33.5"), "digest": "x"}]),
            "the statement's subject sha512 differs from the tarball's integrity",
        ),
    ],
    ids=[
        "type",
        "json",
        "not-object",
        "statement-type",
        "predicate",
        "no-subject",
        "subject-not-object",
        "subject-not-list",
        "other-purl",
        "digest",
    ],
)
def test_statement_checks_fail_with_their_reason(
    payload_type: str, payload: bytes, reason: str
) -> None:
    envelope = Envelope(payload=payload, payload_type=payload_type, signatures=())

    with pytest.raises(VerificationFailed) as caught:
        check_statement(envelope, version(), SLSA_PREDICATES, f"{NAME}@0.33.5")

    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: {reason}; do not bypass — keep the "
        "known-good pins"
    )
    assert caught.value.fields == {"package": f"{NAME}@0.33.5"}


def test_a_statement_without_predicate_object_gives_an_empty_predicate() -> None:
    envelope = Envelope(payload=_statement(predicate="x"), payload_type=IN_TOTO, signatures=())

    assert check_statement(envelope, version(), SLSA_PREDICATES, "label") == {}


@pytest.mark.parametrize(
    ("claimed", "allowed"),
    [
        ("https://github.com/mallory/sharp", False),
        ("https://github.com/Lovell/Sharp", True),
    ],
)
def test_predicate_must_name_the_signers_repository(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, claimed: str, allowed: bool
) -> None:
    bundle = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY, predicate_repository=claimed)
    found = attestations(sigstore, None, bundle=bundle)

    if allowed:
        assert check(found, root, keys).status == "verified"
        return
    with pytest.raises(VerificationFailed) as caught:
        check(found, root, keys)
    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: the provenance predicate names another "
        "repository than its signer; do not bypass — keep the known-good pins"
    )


def test_a_message_signature_bundle_is_not_provenance(root: TrustedRoot) -> None:
    real = Path(__file__).parents[1] / "fixtures" / "sigstore" / "conformance" / "happy-path-v0.3"
    bundle = parse_bundle(json.loads((real / "bundle.sigstore.json").read_text()), source="x")

    with pytest.raises(VerificationFailed) as caught:
        verify_slsa_provenance(bundle, version(), root, SHARP)
    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: the provenance bundle holds no DSSE "
        "envelope; do not bypass — keep the known-good pins"
    )


def test_identity_from_fulcio_v1_extensions() -> None:
    # Fulcio's first OIDs carry raw strings and an owner/name repository
    certificate = extension_certificate(
        {
            "1": b"https://token.actions.githubusercontent.com",
            "5": b"lovell/sharp",
            "6": b"refs/tags/v0.33.5",
        }
    )

    assert certificate_identity(certificate) == Identity(
        issuer="https://token.actions.githubusercontent.com",
        source_repository="https://github.com/lovell/sharp",
        source_ref="refs/tags/v0.33.5",
        subject=None,
    )


def test_identity_from_long_der_values_and_the_san() -> None:
    long_repository = "https://github.com/lovell/" + "s" * 200
    certificate = extension_certificate(
        {
            "8": der_utf8(GITHUB_ISSUER),
            "12": der_utf8(long_repository),
            "14": der_utf8("refs/tags/v1"),
            "1": b"https://ignored.example",
        },
        san="https://github.com/lovell/sharp/.github/workflows/release.yml@refs/tags/v1",
    )

    assert certificate_identity(certificate) == Identity(
        issuer=GITHUB_ISSUER,
        source_repository=long_repository,
        source_ref="refs/tags/v1",
        subject="https://github.com/lovell/sharp/.github/workflows/release.yml@refs/tags/v1",
    )


def test_a_person_signed_certificate_is_no_ci_identity() -> None:
    # sigstore-js's fixture: signed through GitHub OAuth, its SAN an e-mail address, no URI
    bundle = Path(__file__).parents[1] / "fixtures" / "sigstore" / "sigstore-js"
    data = json.loads((bundle / "v0.1-hashedrekord-certificate.sigstore.json").read_text())
    chain = data["verificationMaterial"]["x509CertificateChain"]["certificates"]
    certificate = x509.load_der_x509_certificate(base64.b64decode(chain[0]["rawBytes"]))

    identity = certificate_identity(certificate)

    assert identity == Identity(
        issuer="https://github.com/login/oauth",
        source_repository=None,
        source_ref=None,
        subject=None,
    )
    assert IdentityPolicy(("lovell/sharp",)).problems(identity)  # refused, not a crash


@pytest.mark.parametrize("raw", [b"", b"\x0c", b"\x04\x03abc", b"\x0c\x02\xff\xfe"])
def test_malformed_der_extension_values_give_no_identity(raw: bytes) -> None:
    certificate = extension_certificate({"8": raw})

    assert certificate_identity(certificate).issuer is None


@pytest.mark.parametrize(
    "predicate",
    [{"version": "0.33.6"}, {"name": "@img/sharp-linuxmusl-x64"}],
    ids=["version", "name"],
)
def test_publish_attestation_must_name_this_package_and_version(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair, predicate: Any
) -> None:
    data = sigstore.publish_bundle(NAME, "0.33.5", INTEGRITY, registry_key, predicate=predicate)
    bundle = parse_bundle(data, source="x")
    (key,) = parse_keys(keys_document(registry_key.entry()), source="test")

    with pytest.raises(VerificationFailed) as caught:
        verify_publish_attestation(bundle, version(), root, key)
    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: the publish attestation names another "
        "package or version; do not bypass — keep the known-good pins"
    )


def test_publish_attestation_must_be_a_dsse_envelope_over_this_tarball(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair
) -> None:
    (key,) = parse_keys(keys_document(registry_key.entry()), source="test")
    real = Path(__file__).parents[1] / "fixtures" / "sigstore" / "conformance" / "happy-path-v0.3"
    message = parse_bundle(json.loads((real / "bundle.sigstore.json").read_text()), source="x")
    other = "sha512-" + base64.b64encode(hashlib.sha512(b"other bytes").digest()).decode()
    elsewhere = parse_bundle(
        sigstore.publish_bundle(NAME, "0.33.5", other, registry_key), source="x"
    )
    prefix = f"provenance check failed for {NAME}@0.33.5: "

    with pytest.raises(VerificationFailed) as caught:
        verify_publish_attestation(message, version(), root, key)
    assert caught.value.message.startswith(
        prefix + "the publish attestation holds no DSSE envelope;"
    )
    with pytest.raises(VerificationFailed) as caught:
        verify_publish_attestation(elsewhere, version(), root, key)
    assert caught.value.message.startswith(
        prefix + "the statement's subject sha512 differs from the tarball's integrity;"
    )


def test_publish_attestation_signed_by_another_key_than_it_names_fails(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair
) -> None:
    impostor = RegistryKeyPair()
    data = sigstore.publish_bundle(NAME, "0.33.5", INTEGRITY, impostor)
    data["verificationMaterial"]["publicKey"]["hint"] = registry_key.keyid
    (key,) = parse_keys(keys_document(registry_key.entry()), source="test")

    with pytest.raises(VerificationFailed) as caught:
        verify_publish_attestation(parse_bundle(data, source="x"), version(), root, key)
    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: the envelope's signature does not verify; "
        "do not bypass — keep the known-good pins"
    )


def test_attestations_without_slsa_provenance_announced_are_not_required(
    sigstore: TestSigstore, root: TrustedRoot, keys: TrustedKeys, registry_key: RegistryKeyPair
) -> None:
    # a version whose packument lists an attestations URL but no provenance predicate: only
    # the publish attestation is served, and that is not a lost provenance
    def publish_only(v: str) -> PackageVersion:
        return replace(version(v), dist=replace(version(v).dist, provenance_predicate=None))

    found = attestations(sigstore, registry_key)[1:]

    result = check(
        found, root, keys, manifest=publish_only("0.33.5"), previous=publish_only("0.33.4")
    )

    assert (result.status, result.publish_attestation) == ("absent", "verified")
    assert (result.previous_version, result.previous_had_provenance) == ("0.33.4", False)


def test_publish_attestation_under_required_without_registry_keys_fails(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair
) -> None:
    no_keys = trusted_keys("https://registry.example/", pinned={}, served=None)

    with pytest.raises(
        VerificationFailed,
        match=failed(f"the publish attestation names unknown key {registry_key.keyid!r}"),
    ):
        check(attestations(sigstore, registry_key), root, no_keys, policy="required")


@pytest.mark.parametrize(
    ("predicate", "source"),
    [(SLSA_V1, "provenance"), (PUBLISH_V01, "publish attestation")],
)
def test_a_malformed_bundle_is_named_by_package_and_kind(
    sigstore: TestSigstore,
    root: TrustedRoot,
    keys: TrustedKeys,
    predicate: str,
    source: str,
) -> None:
    found = {SLSA_V1: attestations(sigstore, None)[0], predicate: Attestation(predicate, {})}

    with pytest.raises(InvalidRemoteData) as caught:
        check(tuple(found.values()), root, keys)
    assert caught.value.message == (
        f"{NAME}@0.33.5 {source}: unsupported sigstore bundle media type None"
    )


def test_publish_attestation_logged_after_the_key_expired_fails(
    sigstore: TestSigstore, root: TrustedRoot, registry_key: RegistryKeyPair
) -> None:
    logged = datetime(2025, 6, 1, tzinfo=UTC)
    data = sigstore.publish_bundle(NAME, "0.33.5", INTEGRITY, registry_key, signed_at=logged)
    bundle = parse_bundle(data, source="x")
    (before,) = parse_keys(keys_document(registry_key.entry("2025-05-31T00:00:00Z")), source="t")
    (after,) = parse_keys(keys_document(registry_key.entry("2025-06-02T00:00:00Z")), source="t")

    assert verify_publish_attestation(bundle, version(), root, after) == logged
    with pytest.raises(VerificationFailed) as caught:
        verify_publish_attestation(bundle, version(), root, before)
    assert caught.value.message == (
        f"provenance check failed for {NAME}@0.33.5: registry key {registry_key.keyid} had "
        "expired when the attestation was logged; do not bypass — keep the known-good pins"
    )


def test_a_log_entry_recording_an_unreadable_signer_fails(
    sigstore: TestSigstore, root: TrustedRoot
) -> None:
    data = sigstore.provenance_bundle(NAME, "0.33.5", INTEGRITY)
    bundle = parse_bundle(data, source="x")
    (entry,) = bundle.tlog_entries
    body = json.loads(entry.body)
    body["spec"]["content"]["envelope"]["signatures"][0]["publicKey"] = base64.b64encode(
        b"-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
    ).decode()
    assert bundle.envelope is not None and bundle.certificate is not None

    with pytest.raises(VerificationFailed, match="records other signatures or another signer"):
        check_entry_body(
            replace(entry, body=json.dumps(body).encode()),
            bundle.envelope,
            bundle.certificate,
            "label",
        )


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], 'expected {"attestations": [...]}'),
        ({"attestations": {}}, 'expected {"attestations": [...]}'),
        ({"attestations": [1]}, "an attestation has no predicateType"),
        (
            {"attestations": [{"predicateType": 5, "bundle": {}}]},
            "an attestation has no predicateType",
        ),
        ({"attestations": [{"predicateType": SLSA_V1}]}, "bundle field bundle is missing"),
    ],
    ids=["a-list", "not-a-list", "not-an-object", "type-not-text", "no-bundle"],
)
def test_a_malformed_attestations_document_is_refused_naming_the_registry(
    document: object, reason: str
) -> None:
    with pytest.raises(
        InvalidRemoteData, match="^" + re.escape(f"r.test attestations: {reason}") + "$"
    ):
        parse_attestations(document, source="r.test attestations")

    bundle = {"mediaType": "x"}
    entries = {"attestations": [{"predicateType": SLSA_V1, "bundle": bundle}]}
    assert parse_attestations(entries, source="r") == (Attestation(SLSA_V1, bundle),)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://r.test/a", "//r.test/a"])
def test_an_attestations_url_that_is_not_http_is_never_fetched(url: str) -> None:
    with pytest.raises(
        InvalidRemoteData,
        match="^" + re.escape(f"dist.attestations.url {url!r} is not an http(s) URL") + "$",
    ):
        fetch_attestations(url, HttpSource(attempts=1), NpmSettings())


def test_an_https_attestations_url_is_fetched() -> None:
    # nothing listens there: the request is made (and fails as unreachable), not refused unsent
    host = f"https://127.0.0.1:{free_port()}"

    with pytest.raises(ServiceUnavailable) as caught:
        fetch_attestations(
            f"{host}/-/npm/v1/attestations/sharp@0.33.5", HttpSource(attempts=1), NpmSettings()
        )
    assert caught.value.message == (
        f"{host} is unreachable (ConnectError); check the URL and the network"
    )
