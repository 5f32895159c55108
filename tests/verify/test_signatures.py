"""Registry signatures: npm's rule proven with keys generated here, then against a real signing
registry on 127.0.0.1 (Verdaccio + a front serving /-/npm/v1/keys) through the step."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from bot.errors import ConfigError, InvalidRemoteData, ServiceUnavailable, VerificationFailed
from bot.sources.http import HttpSource
from bot.sources.npm.models import Dist, PackageVersion, Signature
from bot.sources.npm.settings import PUBLIC_REGISTRY, NpmSettings
from bot.steps.registry import get_step
from bot.verify.signatures import (
    KEYS_LIMIT,
    PINNED_KEYS_FILE,
    RegistryKeyring,
    TrustedKeys,
    default_policy,
    effective_policy,
    load_pinned_keys,
    parse_keys,
    pinned_keys_for,
    trusted_keys,
    verify_signatures,
)
from tests.support.signing_registry import (
    RegistryKeyPair,
    SigningRegistry,
    keys_document,
    start_signing_registry,
)
from tests.support.step_context import make_context, rotation_for

REGISTRY = "http://127.0.0.1:4873/"
INTEGRITY = "sha512-" + base64.b64encode(hashlib.sha512(b"tarball").digest()).decode()
PUBLISHED = datetime(2024, 8, 16, 14, 0, tzinfo=UTC)


def manifest(
    key: RegistryKeyPair | None,
    *,
    name: str = "@img/sharp-linux-x64",
    version: str = "0.33.5",
    integrity: str = INTEGRITY,
    signed: str | None = None,
    published_at: datetime | None = PUBLISHED,
) -> PackageVersion:
    signatures: tuple[Signature, ...] = ()
    if key is not None:
        message = (signed or f"{name}@{version}:{integrity}").encode()
        signatures = (Signature(key.keyid, key.sign(message)),)
    return PackageVersion(
        name=name,
        version=version,
        dist=Dist(tarball=f"{REGISTRY}x.tgz", integrity=integrity, signatures=signatures),
        published_at=published_at,
    )


def keys_of(*pairs: RegistryKeyPair, expires: str | None = None) -> TrustedKeys:
    served = parse_keys(keys_document(*(p.entry(expires) for p in pairs)), source="test")
    return trusted_keys(REGISTRY, pinned={}, served=served)


@pytest.fixture(scope="module")
def key() -> RegistryKeyPair:
    return RegistryKeyPair()


def test_good_signature_verifies_and_records_key_and_policy(key: RegistryKeyPair) -> None:
    check = verify_signatures(manifest(key), keys_of(key), "required")

    assert check.verified
    assert check.as_evidence() == {
        "name": "@img/sharp-linux-x64",
        "version": "0.33.5",
        "registry": "http://127.0.0.1:4873",
        "policy": "required",
        "status": "verified",
        "verified": True,
        "key_source": "registry",
        "keyids": [key.keyid],
    }


@pytest.mark.parametrize(
    "signed",
    [
        "@img/sharp-linuxmusl-x64@0.33.5:" + INTEGRITY,  # another package's signature
        "@img/sharp-linux-x64@0.33.4:" + INTEGRITY,  # another version's
        "@img/sharp-linux-x64@0.33.5:sha512-" + "A" * 86 + "==",  # another tarball's
    ],
    ids=["wrong-name", "wrong-version", "changed-integrity"],
)
def test_signature_over_anything_else_fails_naming_package_and_host(
    key: RegistryKeyPair, signed: str
) -> None:
    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(manifest(key, signed=signed), keys_of(key), "if-published")

    message = caught.value.message
    assert "@img/sharp-linux-x64@0.33.5" in message and "http://127.0.0.1:4873" in message
    assert "does not match" in message
    assert caught.value.fields["policy"] == "if-published"


def test_registry_changing_integrity_after_signing_fails(key: RegistryKeyPair) -> None:
    signed_for = manifest(key)
    tampered = PackageVersion(
        name=signed_for.name,
        version=signed_for.version,
        dist=Dist(
            tarball=signed_for.dist.tarball,
            integrity="sha512-" + base64.b64encode(hashlib.sha512(b"evil").digest()).decode(),
            signatures=signed_for.dist.signatures,
        ),
        published_at=PUBLISHED,
    )

    with pytest.raises(VerificationFailed, match="does not match"):
        verify_signatures(tampered, keys_of(key), "required")


def test_expiry_is_judged_against_the_publish_time_like_npm(key: RegistryKeyPair) -> None:
    # expired long ago, but the version was published before that: still valid (npm's rule)
    verify_signatures(manifest(key), keys_of(key, expires="2025-01-29T00:00:00.000Z"), "required")

    late = manifest(key, published_at=datetime(2025, 2, 1, tzinfo=UTC))
    with pytest.raises(VerificationFailed, match="expired 2025-01-29"):
        verify_signatures(late, keys_of(key, expires="2025-01-29T00:00:00.000Z"), "required")

    unknown_time = manifest(key, published_at=None)
    with pytest.raises(VerificationFailed, match=r"published \(unknown\)"):
        verify_signatures(unknown_time, keys_of(key, expires="2030-01-01T00:00:00Z"), "required")


def test_unknown_key_fails(key: RegistryKeyPair) -> None:
    stranger = RegistryKeyPair()

    with pytest.raises(VerificationFailed, match=re.escape(f"unknown key {stranger.keyid}")):
        verify_signatures(manifest(stranger), keys_of(key), "required")


def test_bad_base64_signature_fails(key: RegistryKeyPair) -> None:
    broken = PackageVersion(
        name="a",
        version="1.0.0",
        dist=Dist(
            tarball=f"{REGISTRY}a.tgz",
            integrity=INTEGRITY,
            signatures=(Signature(key.keyid, "not base64!"),),
        ),
        published_at=PUBLISHED,
    )

    with pytest.raises(VerificationFailed, match="does not match"):
        verify_signatures(broken, keys_of(key), "required")


@pytest.mark.parametrize("policy", ["required", "if-published"])
def test_missing_signature_fails_when_the_registry_publishes_keys(
    key: RegistryKeyPair, policy: str
) -> None:
    with pytest.raises(VerificationFailed, match="carries no dist.signatures"):
        verify_signatures(manifest(None), keys_of(key), policy)  # type: ignore[arg-type]


def test_missing_signature_without_published_keys_depends_on_policy() -> None:
    no_keys = trusted_keys(REGISTRY, pinned={}, served=None)

    assert verify_signatures(manifest(None), no_keys, "if-published").status == "not verifiable"
    assert verify_signatures(manifest(None), no_keys, "off").status == "off"
    with pytest.raises(VerificationFailed, match="publishes no signing keys"):
        verify_signatures(manifest(None), no_keys, "required")


def test_off_records_the_policy_and_checks_nothing(key: RegistryKeyPair) -> None:
    check = verify_signatures(manifest(RegistryKeyPair()), keys_of(key), "off")

    assert (check.status, check.verified, check.as_evidence()["policy"]) == ("off", False, "off")


def test_default_policy_is_required_for_the_public_registry_only() -> None:
    assert default_policy(PUBLIC_REGISTRY) == "required"
    assert default_policy("https://npm.example.com/") == "if-published"
    assert effective_policy(None, PUBLIC_REGISTRY) == "required"
    assert effective_policy("off", PUBLIC_REGISTRY) == "off"


def test_pinned_registry_trusts_only_pinned_keys(key: RegistryKeyPair) -> None:
    rotated = RegistryKeyPair()
    pinned = {REGISTRY: parse_keys(keys_document(key.entry()), source="pins")}
    served = parse_keys(keys_document(key.entry(), rotated.entry()), source="served")

    keys = trusted_keys(REGISTRY, pinned=pinned, served=served)

    assert keys.source == "pinned" and [k.keyid for k in keys.keys] == [key.keyid]
    assert keys.unpinned_keyids == (rotated.keyid,)
    verify_signatures(manifest(key), keys, "required")
    with pytest.raises(VerificationFailed, match="not pinned: refresh the pinned keys"):
        verify_signatures(manifest(rotated), keys, "required")


def test_pinned_key_with_other_bytes_served_is_an_attack(key: RegistryKeyPair) -> None:
    impostor = RegistryKeyPair()
    entry = {**impostor.entry(), "keyid": key.keyid}
    pinned = {REGISTRY: parse_keys(keys_document(key.entry()), source="pins")}

    with pytest.raises(VerificationFailed) as caught:
        trusted_keys(REGISTRY, pinned=pinned, served=parse_keys(keys_document(entry), source="x"))
    assert caught.value.message == (
        f"http://127.0.0.1:4873 serves key {key.keyid} with bytes that differ from the pinned "
        "key; something between the bot and the registry is rewriting keys"
    )
    assert caught.value.fields == {"registry": "http://127.0.0.1:4873", "keyid": key.keyid}


def test_a_pinned_registry_that_serves_keys_is_checked_under_if_published(
    key: RegistryKeyPair,
) -> None:
    pinned = {REGISTRY: parse_keys(keys_document(key.entry()), source="pins")}
    served = parse_keys(keys_document(key.entry()), source="served")

    keys = trusted_keys(REGISTRY, pinned=pinned, served=served)

    assert keys.registry_serves_keys is True
    assert verify_signatures(manifest(key), keys, "if-published").status == "verified"
    with pytest.raises(VerificationFailed, match="carries no dist.signatures"):
        verify_signatures(manifest(None), keys, "if-published")


def test_served_expiry_tightens_a_pinned_key(key: RegistryKeyPair) -> None:
    pinned = {REGISTRY: parse_keys(keys_document(key.entry()), source="pins")}
    served = parse_keys(keys_document(key.entry("2024-01-01T00:00:00Z")), source="served")

    keys = trusted_keys(REGISTRY, pinned=pinned, served=served)

    with pytest.raises(VerificationFailed, match="expired"):
        verify_signatures(manifest(key), keys, "required")


def test_pinned_registry_without_served_keys_is_not_verifiable_under_if_published() -> None:
    """The mirror reachable here strips signatures and serves no keys: if-published says so,
    required (the public registry's default) fails closed."""
    keys = trusted_keys(PUBLIC_REGISTRY, pinned=load_pinned_keys(), served=None)
    stripped = manifest(None, published_at=datetime(2024, 12, 2, tzinfo=UTC))

    assert verify_signatures(stripped, keys, "if-published").status == "not verifiable"
    with pytest.raises(VerificationFailed, match="carries no dist.signatures"):
        verify_signatures(stripped, keys, "required")


def test_shipped_npm_keys_are_the_ones_their_keyids_name() -> None:
    """npm keyids are SHA256 fingerprints of the SSH form of the key: they prove the bytes."""
    keys = load_pinned_keys()[PUBLIC_REGISTRY]
    assert [k.keyid for k in keys] == [
        "SHA256:jl3bwswu80PjjokCgh0o2w5c2U4LhQAE57gj9cz1kzA",
        "SHA256:DhQ8wR5APBvFHLF/+Tc+AYvPOdTpcIDqOhxsBHRwC7U",
    ]
    for pinned in keys:
        blob = base64.b64decode(
            pinned.public_key.public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ).split()[1]
        )
        fingerprint = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        assert pinned.keyid == f"SHA256:{fingerprint}"
    assert keys[0].expires == datetime(2025, 1, 29, tzinfo=UTC) and keys[1].expires is None


def _p384() -> str:
    public = ec.generate_private_key(ec.SECP384R1()).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ([], 'expected {"keys": [...]}'),
        ({"keys": {}}, 'expected {"keys": [...]}'),
        ({"keys": ["k"]}, "a key entry is not an object"),
        ({"keys": [{"keyid": "", "key": "AAAA"}]}, "a key entry has no keyid or key"),
        ({"keys": [{"keyid": 7, "key": "AAAA"}]}, "a key entry has no keyid or key"),
        ({"keys": [{"keyid": "k"}]}, "a key entry has no keyid or key"),
        ({"keys": [{"keyid": "k", "key": "AAAA!"}]}, "key k is not base64 SPKI"),
        ({"keys": [{"keyid": "k", "key": "AAAA"}]}, "key k is not base64 SPKI"),
        ({"keys": [{"keyid": "k", "key": "P384"}]}, "key k is not an ECDSA P-256 key"),
    ],
    ids=[
        "list",
        "keys-object",
        "entry",
        "empty-keyid",
        "keyid-type",
        "no-key",
        "base64",
        "not-spki",
        "p384",
    ],
)
def test_a_bad_keys_document_is_named(document: Any, reason: str) -> None:
    if "P384" in json.dumps(document):
        document["keys"][0]["key"] = _p384()

    with pytest.raises(InvalidRemoteData) as caught:
        parse_keys(document, source="registry.example/-/npm/v1/keys")

    assert caught.value.message == f"registry.example/-/npm/v1/keys: {reason}"


def test_a_key_of_another_scheme_is_left_out_and_the_next_one_kept(
    key: RegistryKeyPair, caplog: pytest.LogCaptureFixture
) -> None:
    other = {**key.entry(), "keyid": "SHA256:other", "scheme": "ed25519"}

    with caplog.at_level(logging.WARNING, logger="bot.verify.signatures"):
        keys = parse_keys(keys_document(other, key.entry()), source="test")

    assert [item.keyid for item in keys] == [key.keyid]
    assert [(record.getMessage(), getattr(record, "keyid", None)) for record in caplog.records] == [
        ("skipping key with unsupported scheme", "SHA256:other")
    ]


def test_a_key_with_characters_outside_base64_is_refused(key: RegistryKeyPair) -> None:
    # a lenient decoder would drop the "*" and load the key: npm's keys are plain base64
    entry = {**key.entry(), "key": key.key[:8] + "*" + key.key[8:]}

    with pytest.raises(InvalidRemoteData) as caught:
        parse_keys(keys_document(entry), source="keys.json")
    assert caught.value.message == f"keys.json: key {key.keyid} is not base64 SPKI"


def test_a_registry_serving_no_keys_is_recorded_as_the_key_source(key: RegistryKeyPair) -> None:
    for served in (None, ()):
        keys = trusted_keys(REGISTRY, pinned={}, served=served)
        assert (keys.source, keys.keys, keys.registry_serves_keys) == ("none", (), False)
        check = verify_signatures(manifest(key), keys, "if-published")
        assert (check.status, check.as_evidence()["key_source"]) == ("not verifiable", "none")


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (None, "cannot read pinned registry keys (No such file or directory)"),
        ("{", "pinned registry keys are not valid JSON"),
        ("[]", "expected an object mapping registry URLs to key sets"),
        ('{"https://npm.example.com": {"keys": [{}]}}', "a key entry has no keyid or key"),
    ],
    ids=["missing", "not-json", "not-object", "bad-key"],
)
def test_a_bad_pinned_keys_file_is_named(tmp_path: Path, content: str | None, reason: str) -> None:
    path = tmp_path / "npm-registry-keys.json"
    if content is not None:
        path.write_text(content)

    with pytest.raises(ConfigError) as caught:
        load_pinned_keys(path)

    where = f"{path} [https://npm.example.com]" if reason.startswith("a key") else str(path)
    assert caught.value.message == f"{where}: {reason}"


def test_state_dir_trust_file_replaces_the_shipped_keys(tmp_path: Path) -> None:
    own = RegistryKeyPair()
    assert pinned_keys_for(tmp_path) == load_pinned_keys(PINNED_KEYS_FILE)
    (tmp_path / "trust").mkdir()
    (tmp_path / "trust" / "npm-registry-keys.json").write_text(
        json.dumps({"https://npm.example.com": keys_document(own.entry())})
    )

    assert list(pinned_keys_for(tmp_path)) == ["https://npm.example.com/"]


# --- against a real signing registry --------------------------------------------------------


@pytest.fixture(scope="module")
def signing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningRegistry]:
    registry = start_signing_registry(tmp_path_factory.mktemp("signing"))
    try:
        registry.publish(
            "sharp", "0.33.5", extra={"optionalDependencies": {"@img/sharp-linux-x64": "0.33.5"}}
        )
        registry.publish("@img/sharp-linux-x64", "0.33.5", extra={"os": ["linux"]})
        registry.publish("sharp", "0.33.6", sign=False)
        registry.publish("@img/sharp-linux-x64", "0.33.6", extra={"os": ["linux"]})
        yield registry
    finally:
        registry.stop()


def test_keyring_reads_served_keys_and_404_as_none(signing: SigningRegistry) -> None:
    http = HttpSource(attempts=1)
    keyring = RegistryKeyring(http, NpmSettings(registry=signing.url), pinned={})

    keys = keyring.keys(signing.url)
    assert [k.keyid for k in keys.keys] == [signing.signer.keyid] and keys.registry_serves_keys
    assert keyring.fetch(signing.verdaccio.url) is None  # plain Verdaccio publishes no keys


def test_keyring_sends_the_registry_credentials_for_the_keys(signing: SigningRegistry) -> None:
    nerf = signing.url.removeprefix("http:")
    signing.require_token("s3cret")
    try:
        with_token = NpmSettings(
            registry=signing.url, credentials=((nerf, "_authToken", "s3cret"),)
        )
        keys = RegistryKeyring(HttpSource(attempts=1), with_token, pinned={}).keys(signing.url)
        assert [k.keyid for k in keys.keys] == [signing.signer.keyid]
        assert signing.last_accept == "application/json"

        anonymous = RegistryKeyring(HttpSource(attempts=1), NpmSettings(registry=signing.url), {})
        with pytest.raises(ServiceUnavailable) as caught:
            anonymous.keys(signing.url)
        assert caught.value.message == (
            f"{signing.url[:-1]} refused access to -/npm/v1/keys (HTTP 401); check the registry "
            "token in the operator's npm settings (NPM_CONFIG_USERCONFIG)"
        )
    finally:
        signing.require_token(None)


@pytest.mark.parametrize("status", [404, 405])
def test_a_registry_without_the_keys_endpoint_serves_no_keys(
    signing: SigningRegistry, status: int
) -> None:
    signing.answer_keys_with(status)
    try:
        keyring = RegistryKeyring(HttpSource(attempts=1), NpmSettings(registry=signing.url), {})
        assert keyring.fetch(signing.url) is None
        assert keyring.keys(signing.url).source == "none"
    finally:
        signing.answer_keys_with(None)


@pytest.mark.parametrize(
    ("status", "reason"),
    # a 5xx, 501 too, is retried by HttpSource and never reaches the keyring as an answer
    [
        (
            403,
            "refused access to -/npm/v1/keys (HTTP 403); check the registry token in the "
            "operator's npm settings (NPM_CONFIG_USERCONFIG)",
        ),
        (501, "answered HTTP 501 1 times; try again later"),
    ],
)
def test_a_registry_failing_to_serve_its_keys_is_unavailable(
    signing: SigningRegistry, status: int, reason: str
) -> None:
    signing.answer_keys_with(status)
    try:
        keyring = RegistryKeyring(HttpSource(attempts=1), NpmSettings(registry=signing.url), {})
        with pytest.raises(ServiceUnavailable) as caught:
            keyring.fetch(signing.url)
        assert caught.value.message == f"{signing.url[:-1]} {reason}"
    finally:
        signing.answer_keys_with(None)


def test_a_malformed_keys_document_names_the_registry_endpoint(signing: SigningRegistry) -> None:
    signing.serve_keys({"keys": {}})
    try:
        keyring = RegistryKeyring(HttpSource(attempts=1), NpmSettings(registry=signing.url), {})
        with pytest.raises(InvalidRemoteData) as caught:
            keyring.fetch(signing.url)
        assert caught.value.message == (
            f'{signing.url[:-1]}/-/npm/v1/keys: expected {{"keys": [...]}}'
        )
    finally:
        signing.serve_keys(keys_document(signing.signer.entry()))


def test_a_keys_document_over_the_cap_is_refused(signing: SigningRegistry) -> None:
    signing.serve_keys({**keys_document(signing.signer.entry()), "padding": "x" * KEYS_LIMIT})
    try:
        keyring = RegistryKeyring(HttpSource(attempts=1), NpmSettings(registry=signing.url), {})
        with pytest.raises(InvalidRemoteData) as caught:
            keyring.fetch(signing.url)
        assert re.fullmatch(
            re.escape(signing.url[:-1]) + r" sent \d+ bytes, over the 1048576-byte cap",
            caught.value.message,
        )
    finally:
        signing.serve_keys(keys_document(signing.signer.entry()))


def test_step_verifies_every_pinned_package_and_records_policy(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for("0.33.5", {"@img/sharp-linux-x64": ("0.33.4", "0.33.5")}),
    )

    result = get_step("verify-signatures")(ctx)

    assert result.status == "passed"
    assert result.summary == (
        f"signatures: verified for 2 of 2 packages (policy if-published for {signing.url[:-1]})"
    )
    assert ctx.outputs.signatures is not None
    assert [
        (check.name, check.verified, check.policy, check.keyids)
        for check in ctx.outputs.signatures.signatures
    ] == [
        ("sharp", True, "if-published", (signing.signer.keyid,)),
        ("@img/sharp-linux-x64", True, "if-published", (signing.signer.keyid,)),
    ]
    assert [e["name"] for e in result.evidence["signatures"]] == ["sharp", "@img/sharp-linux-x64"]


def test_step_fails_closed_on_an_unsigned_parent(tmp_path: Path, signing: SigningRegistry) -> None:
    ctx = make_context(
        tmp_path,
        signing.url,
        rotation_for("0.33.6", {"@img/sharp-linux-x64": ("0.33.5", "0.33.6")}),
    )

    with pytest.raises(VerificationFailed) as caught:
        get_step("verify-signatures")(ctx)

    assert "sharp@0.33.6" in caught.value.message and "no dist.signatures" in caught.value.message
    assert [e["name"] for e in caught.value.fields["signatures"]] == ["@img/sharp-linux-x64"]


def test_step_says_not_verifiable_where_no_keys_are_published(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    ctx = make_context(tmp_path, signing.verdaccio.url, rotation_for("0.33.5", {}))

    result = get_step("verify-signatures")(ctx)

    assert result.status == "skipped"
    assert result.summary.startswith("signatures: not verifiable for 1 of 1 packages")
    assert result.evidence["signatures"][0]["status"] == "not verifiable"
    assert ctx.outputs.signatures is not None


def test_step_required_policy_fails_where_no_keys_are_published(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    ctx = make_context(
        tmp_path,
        signing.verdaccio.url,
        rotation_for("0.33.5", {}),
        config="version: 1\nverify:\n  signatures: required\n",
    )

    with pytest.raises(VerificationFailed, match="publishes no signing keys"):
        get_step("verify-signatures")(ctx)


def test_step_rejects_signatures_by_a_key_the_registry_no_longer_trusts(
    tmp_path: Path, signing: SigningRegistry
) -> None:
    expired = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    signing.serve_keys(keys_document(signing.signer.entry(expired)))
    try:
        ctx = make_context(tmp_path, signing.url, rotation_for("0.33.5", {}))
        with pytest.raises(VerificationFailed, match="expired"):
            get_step("verify-signatures")(ctx)
    finally:
        signing.serve_keys(keys_document(signing.signer.entry()))


def test_failures_carry_the_exact_message_and_fields(key: RegistryKeyPair) -> None:
    stranger = RegistryKeyPair()
    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(manifest(stranger), keys_of(key), "required")

    assert caught.value.message == (
        "registry signature check failed for @img/sharp-linux-x64@0.33.5 from http://127.0.0.1:4873 "
        f"(policy required): signed with unknown key {stranger.keyid}; do not bypass — keep "
        "the known-good pins"
    )
    assert caught.value.fields == {
        "package": "@img/sharp-linux-x64@0.33.5",
        "registry": "http://127.0.0.1:4873",
        "policy": "required",
        "keyid": stranger.keyid,
    }

    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(manifest(None), keys_of(key), "required")
    assert caught.value.message.endswith(
        "(policy required): the version carries no dist.signatures (stripped or never signed); "
        "do not bypass — keep the known-good pins"
    )

    late = manifest(key, published_at=datetime(2025, 2, 1, tzinfo=UTC))
    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(late, keys_of(key, expires="2025-01-29T00:00:00Z"), "required")
    assert (
        f"key {key.keyid} expired 2025-01-29T00:00:00+00:00 before the version was published "
        "(2025-02-01T00:00:00+00:00)" in caught.value.message
    )
    assert caught.value.fields["keyid"] == key.keyid


def test_a_key_expiring_at_the_publish_time_no_longer_covers_it(key: RegistryKeyPair) -> None:
    at_expiry = manifest(key, published_at=datetime(2025, 1, 29, tzinfo=UTC))

    with pytest.raises(VerificationFailed, match="expired"):
        verify_signatures(at_expiry, keys_of(key, expires="2025-01-29T00:00:00Z"), "required")


def test_a_signature_must_be_canonical_base64(key: RegistryKeyPair) -> None:
    good = manifest(key)
    (signature,) = good.dist.signatures
    spaced = replace(
        good,
        dist=replace(good.dist, signatures=(Signature(key.keyid, "\n" + signature.sig),)),
    )

    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(spaced, keys_of(key), "required")
    assert caught.value.fields["keyid"] == key.keyid


def test_an_unknown_key_served_but_not_pinned_says_how_to_refresh(key: RegistryKeyPair) -> None:
    other = RegistryKeyPair()
    served = parse_keys(keys_document(key.entry(), other.entry()), source="test")
    pinned_only_key = trusted_keys(REGISTRY, pinned={REGISTRY: (served[0],)}, served=served)

    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(manifest(other), pinned_only_key, "required")
    assert (
        f"signed with unknown key {other.keyid}; the registry serves it but it is not pinned: "
        "refresh the pinned keys from /-/npm/v1/keys; do not bypass"
    ) in caught.value.message

    with pytest.raises(VerificationFailed) as caught:
        verify_signatures(manifest(RegistryKeyPair()), pinned_only_key, "required")
    assert "not pinned" not in caught.value.message


def test_a_key_expiry_without_zone_is_refused() -> None:
    entry = {**RegistryKeyPair().entry(), "expires": "2025-01-29T00:00:00"}
    with pytest.raises(InvalidRemoteData) as caught:
        parse_keys({"keys": [entry]}, source="keys.json")
    assert caught.value.message == (
        "keys.json: key expiry '2025-01-29T00:00:00' is not an ISO timestamp with zone"
    )
