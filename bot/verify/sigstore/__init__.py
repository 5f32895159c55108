"""Sigstore bundles verified offline with `cryptography` against a pinned trusted root.

pip `sigstore` cannot verify npm's bundles: npm records them in Rekor as `intoto` 0.0.2 entries,
which sigstore-python rejects, and it does not verify key-signed bundles (npm's publish
attestation) at all.  So this package implements the checks itself, by concern:

- `trust`: the trusted root (`trusted_root.json`: Rekor logs, Fulcio CAs, CT logs, TSAs);
- `bundle`: bundle media types v0.1 to v0.3, DSSE envelopes and message signatures;
- `tlog`: Rekor v1 entries (signed entry timestamp, inclusion proof, checkpoint) and Rekor v2
  entries (tile-based: inclusion proof, checkpoint signed by the log key), and what each entry
  kind records;
- `certificates`: Fulcio chain at the signing time, code-signing usage, SCT, identity policy;
- `timestamps`: RFC 3161 timestamps from a trusted TSA;
- `verifier`: `verify_bundle`, all of the above in order.

Every failure is a `VerificationFailed` naming the package; unknown formats fail closed.
"""

from bot.verify.sigstore.bundle import (
    Bundle,
    Envelope,
    MessageSignature,
    TlogEntry,
    parse_bundle,
    require_object,
)
from bot.verify.sigstore.certificates import (
    GITHUB_ACTIONS_ISSUER,
    Identity,
    IdentityPolicy,
    certificate_identity,
    verify_certificate,
)
from bot.verify.sigstore.keys import PublicKey, fail, verify_signature
from bot.verify.sigstore.tlog import check_entry_body, verify_tlog_entry
from bot.verify.sigstore.trust import (
    TRUSTED_ROOT_FILE,
    TrustedRoot,
    load_trusted_root,
    parse_trusted_root,
    trusted_root_for,
)
from bot.verify.sigstore.verifier import VerifiedBundle, verify_bundle

__all__ = [
    "GITHUB_ACTIONS_ISSUER",
    "TRUSTED_ROOT_FILE",
    "Bundle",
    "Envelope",
    "Identity",
    "IdentityPolicy",
    "MessageSignature",
    "PublicKey",
    "TlogEntry",
    "TrustedRoot",
    "VerifiedBundle",
    "certificate_identity",
    "check_entry_body",
    "fail",
    "load_trusted_root",
    "parse_bundle",
    "parse_trusted_root",
    "require_object",
    "trusted_root_for",
    "verify_bundle",
    "verify_certificate",
    "verify_signature",
    "verify_tlog_entry",
]
