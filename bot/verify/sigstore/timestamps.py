"""RFC 3161 timestamps from a timestamp authority (TSA) in the trusted root.

`rfc3161-client` (the parser and verifier sigstore-python uses) decodes the DER
TimeStampResponse and checks its CMS signature, the TSA certificate chain at the
timestamp's time, the timestamping key usage and the message imprint.  This module
picks the trusted TSA, applies its `validFor` period, and fails closed: every timestamp
a bundle carries must verify over the bundle's signature.
"""

from __future__ import annotations

from datetime import datetime

from rfc3161_client import VerificationError, VerifierBuilder, decode_timestamp_response

from bot.verify.sigstore.keys import fail
from bot.verify.sigstore.trust import CertificateAuthority, TrustedRoot

MAX_TIMESTAMPS = 32


def _verified_by(authority: CertificateAuthority, response: object, signature: bytes) -> bool:
    leaf, *rest = authority.certificates
    *intermediates, root = rest or [leaf]  # a chain of one is its own root
    builder = VerifierBuilder().tsa_certificate(leaf).add_root_certificate(root)
    for intermediate in intermediates:
        builder = builder.add_intermediate_certificate(intermediate)
    try:
        return bool(builder.build().verify_message(response, signature))  # type: ignore[arg-type]
    except VerificationError:
        return False


def verify_timestamps(
    timestamps: tuple[bytes, ...], signature: bytes, root: TrustedRoot, label: str
) -> list[datetime]:
    """The times of the bundle's RFC 3161 timestamps over `signature`, each one verified."""
    if len(timestamps) > MAX_TIMESTAMPS:
        raise fail(label, f"the bundle carries more than {MAX_TIMESTAMPS} timestamps")
    times = []
    for raw in timestamps:
        try:
            response = decode_timestamp_response(raw)
        except ValueError as error:
            raise fail(label, "an RFC 3161 timestamp is not a DER TimeStampResponse") from error
        when = response.tst_info.gen_time  # DER GeneralizedTime: always UTC, aware
        authorities = [tsa for tsa in root.timestamp_authorities if tsa.validity.covers(when)]
        if not any(_verified_by(tsa, response, signature) for tsa in authorities):
            raise fail(
                label,
                "an RFC 3161 timestamp does not verify over the signature with a timestamp "
                "authority the trusted root trusts at its time",
            )
        times.append(when)
    return times
