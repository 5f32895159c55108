"""Fulcio certificates: chain to a trusted CA at the signing time, code-signing usage, an SCT
from a trusted CT log, and the signer identity from Fulcio's extensions against a policy."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, ObjectIdentifier
from cryptography.x509.verification import (
    Criticality,
    ExtensionPolicy,
    PolicyBuilder,
    Store,
    VerificationError,
)

from bot.verify.sigstore.keys import fail, public_der, verify_signature
from bot.verify.sigstore.trust import TrustedRoot

GITHUB_ACTIONS_ISSUER = "https://token.actions.githubusercontent.com"

_FULCIO = "1.3.6.1.4.1.57264.1."
OID_ISSUER_V1 = ObjectIdentifier(_FULCIO + "1")
OID_WORKFLOW_REPOSITORY_V1 = ObjectIdentifier(_FULCIO + "5")
OID_WORKFLOW_REF_V1 = ObjectIdentifier(_FULCIO + "6")
OID_ISSUER = ObjectIdentifier(_FULCIO + "8")
OID_SOURCE_REPOSITORY_URI = ObjectIdentifier(_FULCIO + "12")
OID_SOURCE_REPOSITORY_REF = ObjectIdentifier(_FULCIO + "14")


def _extension_value(certificate: x509.Certificate, oid: ObjectIdentifier) -> bytes | None:
    """The raw value of a Fulcio extension, if the certificate carries it."""
    try:
        value = certificate.extensions.get_extension_for_oid(oid).value
    except x509.ExtensionNotFound:
        return None
    if not isinstance(value, x509.UnrecognizedExtension):
        return None  # cryptography parses no Fulcio OID, so each one is left unrecognized
    return value.value


def _der_utf8(raw: bytes | None) -> bytes | None:
    """The content of a DER UTF8String that is the whole of `raw` (Fulcio's v2 extensions)."""
    if raw is None or len(raw) < 2 or raw[0] != 0x0C:
        return None
    length, offset = raw[1], 2
    if length & 0x80:
        count = length & 0x7F
        length, offset = int.from_bytes(raw[2 : 2 + count]), 2 + count
    return raw[offset:] if len(raw) == offset + length else None


def _text(raw: bytes | None) -> str | None:
    """`raw` as UTF-8 text (Fulcio's v1 extensions are raw strings)."""
    if raw is None:
        return None
    try:
        return raw.decode()
    except UnicodeDecodeError:
        return None


def _v1(certificate: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    return _text(_extension_value(certificate, oid))


def _v2(certificate: x509.Certificate, oid: ObjectIdentifier) -> str | None:
    return _text(_der_utf8(_extension_value(certificate, oid)))


@dataclass(frozen=True)
class Identity:
    """Who a Fulcio certificate was issued to: OIDC issuer, source repository and ref."""

    issuer: str | None
    source_repository: str | None
    source_ref: str | None
    subject: str | None


def certificate_identity(certificate: x509.Certificate) -> Identity:
    """The signer identity from Fulcio's extensions (v2 OIDs, falling back to v1)."""
    repository = _v2(certificate, OID_SOURCE_REPOSITORY_URI)
    if repository is None:
        legacy = _v1(certificate, OID_WORKFLOW_REPOSITORY_V1)
        repository = f"https://github.com/{legacy}" if legacy else None
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        subject = next(iter(names.get_values_for_type(x509.UniformResourceIdentifier)), None)
    except x509.ExtensionNotFound:
        subject = None
    return Identity(
        issuer=_v2(certificate, OID_ISSUER) or _v1(certificate, OID_ISSUER_V1),
        source_repository=repository,
        source_ref=_v2(certificate, OID_SOURCE_REPOSITORY_REF)
        or _v1(certificate, OID_WORKFLOW_REF_V1),
        subject=subject,
    )


@dataclass(frozen=True)
class IdentityPolicy:
    """Which CI identities may sign provenance: issuer, `owner/name` repositories, ref prefix."""

    repositories: tuple[str, ...]
    issuer: str = GITHUB_ACTIONS_ISSUER
    ref_prefix: str = "refs/tags/"

    def problems(self, identity: Identity) -> list[str]:
        """Why `identity` does not satisfy the policy (empty when it does)."""
        found: list[str] = []
        if identity.issuer != self.issuer:
            found.append(f"issuer {identity.issuer!r} is not {self.issuer}")
        allowed = {f"https://github.com/{name}".lower() for name in self.repositories}
        if identity.source_repository is None or identity.source_repository.lower() not in allowed:
            found.append(
                f"source repository {identity.source_repository!r} is not one of "
                f"{', '.join(self.repositories)}"
            )
        if identity.source_ref is None or not identity.source_ref.startswith(self.ref_prefix):
            found.append(f"ref {identity.source_ref!r} is not a {self.ref_prefix}* ref")
        return found


def _verify_sct(
    certificate: x509.Certificate, issuer: x509.Certificate, root: TrustedRoot, label: str
) -> None:
    try:
        scts = certificate.extensions.get_extension_for_class(
            x509.PrecertificateSignedCertificateTimestamps
        ).value
    except x509.ExtensionNotFound:
        raise fail(label, "the signing certificate carries no SCT") from None
    issuer_key = issuer.public_key()
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise fail(label, "the certificate issuer's key type is not supported")
    issuer_key_hash = hashlib.sha256(public_der(issuer_key)).digest()
    tbs = certificate.tbs_precertificate_bytes
    for sct in scts:
        log = next((item for item in root.ctlogs if item.log_id == sct.log_id), None)
        if log is None:
            continue
        milliseconds = (sct.timestamp.replace(tzinfo=UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // (
            timedelta(milliseconds=1)
        )
        signed = (
            b"\x00\x00"  # v1, certificate_timestamp
            + milliseconds.to_bytes(8)
            + b"\x00\x01"  # precert_entry
            + issuer_key_hash
            + len(tbs).to_bytes(3)
            + tbs
            + len(sct.extension_bytes).to_bytes(2)
            + sct.extension_bytes
        )
        if verify_signature(log.public_key, sct.signature, signed):
            return
    raise fail(label, "no SCT on the signing certificate verifies with a trusted CT log")


def verify_certificate(
    certificate: x509.Certificate, root: TrustedRoot, when: datetime, label: str
) -> None:
    """Chain to a trusted Fulcio CA at `when`, code-signing usage, and a valid SCT."""
    anchors = [
        item for ca in root.authorities if ca.validity.covers(when) for item in ca.certificates
    ]
    if not anchors:
        raise fail(label, "no trusted certificate authority was valid at the signing time")
    relaxed_eku = ExtensionPolicy.webpki_defaults_ee().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    relaxed_ca = ExtensionPolicy.webpki_defaults_ca().may_be_present(
        x509.ExtendedKeyUsage, Criticality.NON_CRITICAL, None
    )
    verifier = (
        PolicyBuilder()
        .store(Store(anchors))
        .time(when)
        .extension_policies(ca_policy=relaxed_ca, ee_policy=relaxed_eku)
        .build_client_verifier()
    )
    try:
        chain = verifier.verify(certificate, []).chain
    except (VerificationError, x509.UnsupportedGeneralNameType) as error:
        raise fail(
            label, f"the signing certificate does not chain to a trusted CA ({error})"
        ) from error
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
        extended = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        raise fail(label, "the signing certificate lacks key usage extensions") from None
    if not usage.digital_signature or ExtendedKeyUsageOID.CODE_SIGNING not in extended:
        raise fail(label, "the signing certificate is not for code signing")
    _verify_sct(certificate, chain[1], root, label)
