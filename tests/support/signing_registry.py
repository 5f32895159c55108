"""A signing npm registry on 127.0.0.1 and a sigstore built from test roots.

- `RegistryKeyPair`: an npm-style registry signing key (ECDSA P-256, keyid = SSH-style SHA256
  fingerprint, as npm's keys have) that signs `name@version:integrity`.
- `TestSigstore`: a Fulcio-like CA (root + intermediate), a Rekor-like log key and a CT log key,
  generated in the test; it writes a `trusted_root.json` and builds real sigstore bundles
  (DSSE envelope, leaf certificate with Fulcio identity extensions and an embedded SCT, an
  `intoto` 0.0.2 log entry with signed entry timestamp, Merkle inclusion proof and checkpoint),
  the way npm's provenance and publish attestations look.
- `SigningRegistry`: the test Verdaccio (which keeps `dist.signatures` and `dist.attestations`
  given in published metadata) behind a thin HTTP front, run as a subprocess
  (`python -m tests.support.signing_registry`), that serves `/-/npm/v1/keys` and
  `/-/npm/v1/attestations/<name>@<version>` from files and proxies everything else.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, ObjectIdentifier

from tests.support.processes import free_port, wait_for_http
from tests.support.verdaccio import (
    Verdaccio,
    integrity_of,
    make_tarball,
    start_verdaccio,
)

ROOT = Path(__file__).resolve().parents[2]
SLSA_V1 = "https://slsa.dev/provenance/v1"
PUBLISH_V01 = "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"
GITHUB_ISSUER = "https://token.actions.githubusercontent.com"
_FULCIO = "1.3.6.1.4.1.57264.1."
_SCT_OID = ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _spki(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _pem(key: ec.EllipticCurvePublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _der_length(length: int) -> bytes:
    if length < 128:
        return bytes([length])
    raw = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def der_utf8(text: str) -> bytes:
    """A DER UTF8String (how Fulcio's v2 extensions are encoded)."""
    raw = text.encode()
    return b"\x0c" + _der_length(len(raw)) + raw


def purl(name: str, version: str) -> str:
    return f"pkg:npm/{quote(name, safe='/')}@{version}"


def extension_certificate(
    extensions: Mapping[str, bytes], *, san: str | None = None
) -> x509.Certificate:
    """A self-signed certificate carrying Fulcio extensions (`1.3.6.1.4.1.57264.1.` + the key:
    the raw value) and a URI SAN, to read an identity from."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([]))
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test")]))
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(datetime(2024, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime(2024, 1, 2, tzinfo=UTC))
    )
    for oid, value in extensions.items():
        builder = builder.add_extension(
            x509.UnrecognizedExtension(ObjectIdentifier(_FULCIO + oid), value), critical=False
        )
    if san is not None:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.UniformResourceIdentifier(san)]), critical=True
        )
    return builder.sign(key, hashes.SHA256())


# --- npm registry keys ------------------------------------------------------------------------


@dataclass
class RegistryKeyPair:
    """An npm registry signing key generated for a test."""

    private_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> ec.EllipticCurvePublicKey:
        return self.private_key.public_key()

    @property
    def key(self) -> str:
        """Base64 SPKI, as `/-/npm/v1/keys` serves it."""
        return _b64(_spki(self.public_key))

    @property
    def keyid(self) -> str:
        """`SHA256:` + the unpadded base64 sha256 of the SSH public key blob (npm's keyids)."""
        blob = base64.b64decode(
            self.public_key.public_bytes(
                serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
            ).split()[1]
        )
        return "SHA256:" + _b64(hashlib.sha256(blob).digest()).rstrip("=")

    def entry(self, expires: str | None = None) -> dict[str, Any]:
        return {
            "expires": expires,
            "keyid": self.keyid,
            "keytype": "ecdsa-sha2-nistp256",
            "scheme": "ecdsa-sha2-nistp256",
            "key": self.key,
        }

    def sign(self, message: bytes) -> str:
        return _b64(self.private_key.sign(message, ec.ECDSA(hashes.SHA256())))


def keys_document(*entries: Mapping[str, Any]) -> dict[str, Any]:
    return {"keys": [dict(entry) for entry in entries]}


# --- a sigstore of our own --------------------------------------------------------------------


def _merkle_root(leaves: Sequence[bytes]) -> bytes:
    """RFC 6962 MTH over leaf hashes."""
    if len(leaves) == 1:
        return leaves[0]
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    return hashlib.sha256(
        b"\x01" + _merkle_root(leaves[:split]) + _merkle_root(leaves[split:])
    ).digest()


def _merkle_path(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """RFC 6962 PATH(m, D[n]), leaf-most sibling first."""
    if len(leaves) == 1:
        return []
    split = 1 << ((len(leaves) - 1).bit_length() - 1)
    if index < split:
        return [*_merkle_path(index, leaves[:split]), _merkle_root(leaves[split:])]
    return [*_merkle_path(index - split, leaves[split:]), _merkle_root(leaves[:split])]


@dataclass
class TestSigstore:
    """Fulcio CA, Rekor log and CT log keys made for the tests; builds bundles and a root."""

    __test__ = False

    root_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    intermediate_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP384R1())
    )
    rekor_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    ct_key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    log_size: int = 7
    log_position: int = 5

    def __post_init__(self) -> None:
        start = datetime(2020, 1, 1, tzinfo=UTC)
        end = datetime(2040, 1, 1, tzinfo=UTC)
        root_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test-sigstore")])
        inter_name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "test-sigstore-intermediate")]
        )
        self.root_certificate = (
            x509.CertificateBuilder()
            .subject_name(root_name)
            .issuer_name(root_name)
            .public_key(self.root_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA384())
        )
        self.intermediate = (
            x509.CertificateBuilder()
            .subject_name(inter_name)
            .issuer_name(root_name)
            .public_key(self.intermediate_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_ca_usage(), critical=True)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(self.intermediate_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.root_key.public_key()),
                critical=False,
            )
            .sign(self.root_key, hashes.SHA384())
        )

    @property
    def rekor_log_id(self) -> bytes:
        return hashlib.sha256(_spki(self.rekor_key.public_key())).digest()

    def trusted_root(self) -> dict[str, Any]:
        """This sigstore as a `trusted_root.json` document."""

        def log(key: ec.EllipticCurvePrivateKey, url: str) -> dict[str, Any]:
            spki = _spki(key.public_key())
            return {
                "baseUrl": url,
                "hashAlgorithm": "SHA2_256",
                "publicKey": {
                    "rawBytes": _b64(spki),
                    "keyDetails": "PKIX_ECDSA_P256_SHA_256",
                    "validFor": {"start": "2020-01-01T00:00:00Z"},
                },
                "logId": {"keyId": _b64(hashlib.sha256(spki).digest())},
            }

        return {
            "mediaType": "application/vnd.dev.sigstore.trustedroot+json;version=0.1",
            "tlogs": [log(self.rekor_key, "https://rekor.test")],
            "certificateAuthorities": [
                {
                    "subject": {"organization": "test", "commonName": "test-sigstore"},
                    "uri": "https://fulcio.test",
                    "certChain": {
                        "certificates": [
                            {"rawBytes": _b64(cert.public_bytes(serialization.Encoding.DER))}
                            for cert in (self.intermediate, self.root_certificate)
                        ]
                    },
                    "validFor": {"start": "2020-01-01T00:00:00Z"},
                }
            ],
            "ctlogs": [log(self.ct_key, "https://ctfe.test")],
            "timestampAuthorities": [],
        }

    def write_trusted_root(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.trusted_root(), indent=2))
        return path

    def leaf_certificate(
        self,
        key: ec.EllipticCurvePrivateKey,
        *,
        repository: str,
        ref: str,
        issuer: str,
        signed_at: datetime,
        with_sct: bool = True,
        digital_signature: bool | None = True,
        extended_usage: Sequence[ObjectIdentifier] = (ExtendedKeyUsageOID.CODE_SIGNING,),
    ) -> x509.Certificate:
        """A Fulcio-style certificate for a GitHub Actions workflow, with an embedded SCT
        (`digital_signature` None: no KeyUsage; `extended_usage` empty: no ExtendedKeyUsage)."""
        workflow = f"https://github.com/{repository}/.github/workflows/release.yml@{ref}"
        serial = x509.random_serial_number()
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.intermediate.subject)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(signed_at - timedelta(minutes=1))
            .not_valid_after(signed_at + timedelta(minutes=10))
        )
        if digital_signature is not None:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=digital_signature,
                    content_commitment=not digital_signature,  # one usage bit is always set
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if extended_usage:
            builder = builder.add_extension(
                x509.ExtendedKeyUsage(list(extended_usage)), critical=False
            )
        builder = (
            builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self.intermediate_key.public_key()
                ),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(workflow)]),
                critical=True,
            )
        )
        for oid, value in (
            ("1", issuer.encode()),
            ("8", der_utf8(issuer)),
            ("12", der_utf8(f"https://github.com/{repository}")),
            ("14", der_utf8(ref)),
        ):
            builder = builder.add_extension(
                x509.UnrecognizedExtension(ObjectIdentifier(_FULCIO + oid), value), critical=False
            )
        precertificate = builder.sign(self.intermediate_key, hashes.SHA384())
        if not with_sct:
            return precertificate
        sct = self._sct(precertificate.tbs_certificate_bytes, signed_at)
        sct_list = len(sct).to_bytes(2, "big") + sct
        listed = len(sct_list).to_bytes(2, "big") + sct_list
        octets = b"\x04" + _der_length(len(listed)) + listed
        return builder.add_extension(
            x509.UnrecognizedExtension(_SCT_OID, octets), critical=False
        ).sign(self.intermediate_key, hashes.SHA384())

    def _sct(self, tbs: bytes, when: datetime) -> bytes:
        milliseconds = int(when.timestamp() * 1000)
        issuer_hash = hashlib.sha256(_spki(self.intermediate_key.public_key())).digest()
        signed = (
            b"\x00\x00"
            + milliseconds.to_bytes(8, "big")
            + b"\x00\x01"
            + issuer_hash
            + len(tbs).to_bytes(3, "big")
            + tbs
            + b"\x00\x00"
        )
        signature = self.ct_key.sign(signed, ec.ECDSA(hashes.SHA256()))
        log_id = hashlib.sha256(_spki(self.ct_key.public_key())).digest()
        return (
            b"\x00"
            + log_id
            + milliseconds.to_bytes(8, "big")
            + b"\x00\x00"
            + b"\x04\x03"
            + len(signature).to_bytes(2, "big")
            + signature
        )

    def sct(self, precertificate: x509.Certificate, when: datetime) -> bytes:
        """An RFC 6962 SCT from this sigstore's CT log over `precertificate` (one issued by
        `leaf_certificate(..., with_sct=False)`), as it is embedded."""
        return self._sct(precertificate.tbs_certificate_bytes, when)

    def with_scts(
        self, precertificate: x509.Certificate, scts: Sequence[bytes]
    ) -> x509.Certificate:
        """`precertificate` issued again by the intermediate with `scts` embedded, in order."""
        builder = (
            x509.CertificateBuilder()
            .subject_name(precertificate.subject)
            .issuer_name(precertificate.issuer)
            .public_key(precertificate.public_key())  # type: ignore[arg-type]
            .serial_number(precertificate.serial_number)
            .not_valid_before(precertificate.not_valid_before_utc)
            .not_valid_after(precertificate.not_valid_after_utc)
        )
        for extension in precertificate.extensions:
            builder = builder.add_extension(extension.value, extension.critical)
        sct_list = b"".join(len(sct).to_bytes(2, "big") + sct for sct in scts)
        listed = len(sct_list).to_bytes(2, "big") + sct_list
        octets = b"\x04" + _der_length(len(listed)) + listed
        return builder.add_extension(
            x509.UnrecognizedExtension(_SCT_OID, octets), critical=False
        ).sign(self.intermediate_key, hashes.SHA384())

    def log_entry(
        self, payload: bytes, signature: bytes, signer_pem: bytes, when: datetime
    ) -> dict[str, Any]:
        """An `intoto` 0.0.2 Rekor entry with a promise, an inclusion proof and a checkpoint."""
        body = _canonical(
            {
                "apiVersion": "0.0.2",
                "kind": "intoto",
                "spec": {
                    "content": {
                        "envelope": {
                            "payloadType": "application/vnd.in-toto+json",
                            "signatures": [
                                {
                                    "publicKey": _b64(signer_pem),
                                    "sig": _b64(_b64(signature).encode()),
                                }
                            ],
                        },
                        "hash": {"algorithm": "sha256", "value": "0" * 64},
                        "payloadHash": {
                            "algorithm": "sha256",
                            "value": hashlib.sha256(payload).hexdigest(),
                        },
                    }
                },
            }
        )
        return self.logged(body, when)

    def logged(self, body: bytes, when: datetime) -> dict[str, Any]:
        """A Rekor v1 entry logging `body` (its kind and version are the body's own), with a
        promise, an inclusion proof and a checkpoint."""
        integrated = int(when.timestamp())
        log_index = 1000 + self.log_position
        promise = self.rekor_key.sign(
            _canonical(
                {
                    "body": _b64(body),
                    "integratedTime": integrated,
                    "logID": self.rekor_log_id.hex(),
                    "logIndex": log_index,
                }
            ),
            ec.ECDSA(hashes.SHA256()),
        )
        leaves = [
            hashlib.sha256(b"\x00" + f"other entry {i}".encode()).digest()
            for i in range(self.log_size)
        ]
        leaves[self.log_position] = hashlib.sha256(b"\x00" + body).digest()
        root_hash = _merkle_root(leaves)
        note = f"rekor.test - 42\n{self.log_size}\n{_b64(root_hash)}\n"
        hint = hashlib.sha256(_spki(self.rekor_key.public_key())).digest()[:4]
        note_signature = self.rekor_key.sign(note.encode(), ec.ECDSA(hashes.SHA256()))
        checkpoint = f"{note}\n\u2014 rekor.test {_b64(hint + note_signature)}\n"
        return {
            "logIndex": str(log_index),
            "logId": {"keyId": _b64(self.rekor_log_id)},
            "kindVersion": {
                "kind": json.loads(body)["kind"],
                "version": json.loads(body)["apiVersion"],
            },
            "integratedTime": str(integrated),
            "inclusionPromise": {"signedEntryTimestamp": _b64(promise)},
            "inclusionProof": {
                "logIndex": str(self.log_position),
                "rootHash": _b64(root_hash),
                "treeSize": str(self.log_size),
                "hashes": [_b64(item) for item in _merkle_path(self.log_position, leaves)],
                "checkpoint": {"envelope": checkpoint},
            },
            "canonicalizedBody": _b64(body),
        }

    def provenance_bundle(
        self,
        name: str,
        version: str,
        integrity: str,
        *,
        repository: str = "lovell/sharp",
        ref: str | None = None,
        issuer: str = GITHUB_ISSUER,
        subject_name: str | None = None,
        subject_sha512: str | None = None,
        signed_at: datetime | None = None,
        with_sct: bool = True,
        predicate_repository: str | None = None,
        **usage: Any,
    ) -> dict[str, Any]:
        """A certificate-signed SLSA v1 provenance bundle, as npm publishes with --provenance
        (`predicate_repository`: what the predicate claims, default the signer's repository;
        `usage`: the certificate's `digital_signature` and `extended_usage`)."""
        ref = ref or f"refs/tags/v{version}"
        when = signed_at or datetime.now(UTC) - timedelta(hours=1)
        key = ec.generate_private_key(ec.SECP256R1())
        certificate = self.leaf_certificate(
            key,
            repository=repository,
            ref=ref,
            issuer=issuer,
            signed_at=when,
            with_sct=with_sct,
            **usage,
        )
        statement = _statement(
            subject_name or purl(name, version),
            subject_sha512 or _hex(integrity),
            SLSA_V1,
            {
                "buildDefinition": {
                    "buildType": "https://slsa-framework.github.io/github-actions-buildtypes/workflow/v1",
                    "externalParameters": {
                        "workflow": {
                            "ref": ref,
                            "repository": predicate_repository
                            or f"https://github.com/{repository}",
                            "path": ".github/workflows/release.yml",
                        }
                    },
                },
                "runDetails": {
                    "builder": {"id": "https://github.com/actions/runner/github-hosted"}
                },
            },
        )
        signature = key.sign(_pae(statement), ec.ECDSA(hashes.SHA256()))
        pem = certificate.public_bytes(serialization.Encoding.PEM)
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "verificationMaterial": {
                "x509CertificateChain": {
                    "certificates": [
                        {"rawBytes": _b64(certificate.public_bytes(serialization.Encoding.DER))}
                    ]
                },
                "tlogEntries": [self.log_entry(statement, signature, pem, when)],
                "timestampVerificationData": {"rfc3161Timestamps": []},
            },
            "dsseEnvelope": _envelope(statement, signature),
        }

    def publish_bundle(
        self,
        name: str,
        version: str,
        integrity: str,
        registry_key: RegistryKeyPair,
        *,
        registry: str = "https://registry.npmjs.org",
        signed_at: datetime | None = None,
        predicate: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """The npm publish attestation, signed with the registry's key and logged
        (`predicate` replaces fields of its `{name, version, registry}` predicate)."""
        when = signed_at or datetime.now(UTC) - timedelta(hours=1)
        statement = _statement(
            purl(name, version),
            _hex(integrity),
            PUBLISH_V01,
            {"name": name, "version": version, "registry": registry, **(predicate or {})},
        )
        signature = registry_key.private_key.sign(_pae(statement), ec.ECDSA(hashes.SHA256()))
        return {
            "mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.2",
            "verificationMaterial": {
                "publicKey": {"hint": registry_key.keyid},
                "tlogEntries": [
                    self.log_entry(statement, signature, _pem(registry_key.public_key), when)
                ],
                "timestampVerificationData": {"rfc3161Timestamps": []},
            },
            "dsseEnvelope": _envelope(statement, signature),
        }


def _ca_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=False,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=True,
        crl_sign=True,
        encipher_only=False,
        decipher_only=False,
    )


def _hex(integrity: str) -> str:
    return base64.b64decode(integrity.removeprefix("sha512-")).hex()


def _statement(
    subject: str, sha512: str, predicate_type: str, predicate: Mapping[str, Any]
) -> bytes:
    return json.dumps(
        {
            "_type": "https://in-toto.io/Statement/v1",
            "subject": [{"name": subject, "digest": {"sha512": sha512}}],
            "predicateType": predicate_type,
            "predicate": dict(predicate),
        }
    ).encode()


def _pae(payload: bytes) -> bytes:
    kind = b"application/vnd.in-toto+json"
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def _envelope(payload: bytes, signature: bytes) -> dict[str, Any]:
    return {
        "payload": _b64(payload),
        "payloadType": "application/vnd.in-toto+json",
        "signatures": [{"sig": _b64(signature), "keyid": ""}],
    }


# --- the registry -----------------------------------------------------------------------------


def _attestation_file(directory: Path, spec: str) -> Path:
    return directory / "attestations" / (hashlib.sha256(spec.encode()).hexdigest() + ".json")


@dataclass
class SigningRegistry:
    """Verdaccio behind a front that serves keys and attestations; publishes signed versions."""

    verdaccio: Verdaccio
    url: str
    directory: Path
    process: subprocess.Popen[bytes]
    signer: RegistryKeyPair = field(default_factory=RegistryKeyPair)
    sigstore: TestSigstore = field(default_factory=TestSigstore)

    def serve_keys(self, document: Mapping[str, Any] | None) -> None:
        """What `/-/npm/v1/keys` answers (None: 404, like a registry without signing)."""
        path = self.directory / "keys.json"
        if document is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(json.dumps(document))

    def answer_keys_with(self, status: int | None) -> None:
        """Make `/-/npm/v1/keys` answer HTTP `status` with an error body, as registries without
        the endpoint do (404, 405, 501…); None: serve the keys again."""
        path = self.directory / "keys-status"
        if status is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(str(status))

    def require_token(self, token: str | None) -> None:
        """Make `/-/npm/v1/keys` and the attestations answer 401 to a request without
        `Authorization: Bearer <token>`, as a private registry does (None: serve anyone again)."""
        path = self.directory / "token"
        if token is None:
            path.unlink(missing_ok=True)
        else:
            path.write_text(token)

    @property
    def last_accept(self) -> str | None:
        """The `Accept` header of the last keys or attestations request (None: none sent)."""
        path = self.directory / "last-accept"
        return path.read_text() or None if path.is_file() else None

    def attestations_url(self, name: str, version: str) -> str:
        return f"{self.url}-/npm/v1/attestations/{quote(name, safe='@')}@{version}"

    def serve_attestations(
        self, name: str, version: str, attestations: Sequence[Mapping[str, Any]] | None
    ) -> None:
        path = _attestation_file(self.directory, f"{name}@{version}")
        if attestations is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(exist_ok=True)
            path.write_text(json.dumps({"attestations": list(attestations)}))

    def publish(
        self,
        name: str,
        version: str,
        *,
        extra: Mapping[str, Any] | None = None,
        files: Mapping[str, bytes] | None = None,
        sign: bool = True,
        signer: RegistryKeyPair | None = None,
        signed_message: bytes | None = None,
        provenance: Mapping[str, Any] | None = None,
        publish_attestation: bool = True,
    ) -> dict[str, Any]:
        """Publish a version signed by `signer` (default: the registry's key), with attestations
        when `provenance` (options for `TestSigstore.provenance_bundle`) is given."""
        manifest = {"name": name, "version": version, **(extra or {})}
        integrity = integrity_of(make_tarball(manifest, files))
        dist: dict[str, Any] = {}
        key = signer or self.signer
        if sign:
            message = signed_message or f"{name}@{version}:{integrity}".encode()
            dist["signatures"] = [{"keyid": key.keyid, "sig": key.sign(message)}]
        if provenance is not None:
            attestations = []
            if publish_attestation:
                attestations.append(
                    {
                        "predicateType": PUBLISH_V01,
                        "bundle": self.sigstore.publish_bundle(name, version, integrity, key),
                    }
                )
            attestations.append(
                {
                    "predicateType": SLSA_V1,
                    "bundle": self.sigstore.provenance_bundle(
                        name, version, integrity, **provenance
                    ),
                }
            )
            self.serve_attestations(name, version, attestations)
            dist["attestations"] = {
                "url": self.attestations_url(name, version),
                "provenance": {"predicateType": SLSA_V1},
            }
        return self.verdaccio.publish(name, version, extra=extra, files=files, dist_extra=dist)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
        self.verdaccio.stop()


def start_signing_registry(directory: Path) -> SigningRegistry:
    """Start Verdaccio and the signing front in `directory`; keys are served from the start."""
    verdaccio = start_verdaccio(directory / "verdaccio")
    front = directory / "front"
    front.mkdir(parents=True)
    port = free_port()
    log = (directory / "front.log").open("wb")
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.support.signing_registry",
            "--port",
            str(port),
            "--upstream",
            verdaccio.url,
            "--directory",
            str(front),
        ],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={"PATH": os.environ["PATH"], "PYTHONPATH": str(ROOT)},
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_for_http(f"{url}-/ping", process, directory / "front.log", timeout=20, ok=(200,))
    except RuntimeError:
        verdaccio.stop()
        raise
    registry = SigningRegistry(verdaccio, url, front, process)
    registry.serve_keys(keys_document(registry.signer.entry()))
    return registry


class _Front(BaseHTTPRequestHandler):
    upstream = ""
    directory = Path()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path.startswith("/-/npm/v1/"):
            (self.directory / "last-accept").write_text(self.headers.get("Accept", ""))
        token = self.directory / "token"
        if (
            path.startswith("/-/npm/v1/")
            and token.is_file()
            and self.headers.get("Authorization") != f"Bearer {token.read_text()}"
        ):
            self._send(401, b'{"error":"authentication required"}', "application/json")
        elif path == "/-/npm/v1/keys" and (self.directory / "keys-status").is_file():
            status = int((self.directory / "keys-status").read_text())
            self._send(status, b'{"error":"not supported"}', "application/json")
        elif path == "/-/npm/v1/keys":
            self._file(self.directory / "keys.json")
        elif path.startswith("/-/npm/v1/attestations/"):
            spec = unquote(path.removeprefix("/-/npm/v1/attestations/"))
            self._file(_attestation_file(self.directory, spec))
        else:
            headers = {
                k: v for k, v in self.headers.items() if k.lower() in ("accept", "authorization")
            }
            response = httpx.get(self.upstream.rstrip("/") + self.path, headers=headers, timeout=30)
            self._send(
                response.status_code,
                response.content,
                response.headers.get("content-type", "application/octet-stream"),
            )

    def _file(self, path: Path) -> None:
        if path.is_file():
            self._send(200, path.read_bytes(), "application/json")
        else:
            self._send(404, b'{"error":"not found"}', "application/json")

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        return


def main() -> None:
    parser = argparse.ArgumentParser(description="signing front for the test Verdaccio")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--directory", type=Path, required=True)
    arguments = parser.parse_args()
    _Front.upstream = arguments.upstream
    _Front.directory = arguments.directory
    ThreadingHTTPServer(("127.0.0.1", arguments.port), _Front).serve_forever()


if __name__ == "__main__":
    main()
