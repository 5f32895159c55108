"""The real sigstore fixtures (tests/fixtures/sigstore, sources in its README) and the helpers
the sigstore tests share to load, edit and verify them."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Literal

from bot.verify.sigstore import (
    TRUSTED_ROOT_FILE,
    PublicKey,
    VerifiedBundle,
    load_trusted_root,
    parse_bundle,
    parse_trusted_root,
    verify_bundle,
)

FIXTURES = Path(__file__).parents[1] / "fixtures" / "sigstore"
CONFORMANCE = FIXTURES / "conformance"
SIGSTORE_JS = FIXTURES / "sigstore-js"
NPM_BUNDLE = FIXTURES / "npm" / "sigstore-3.1.0.sigstore.json"

V02 = "happy-path-v0.2"  # message signature, certificate chain, Rekor v1 promise and proof
V03_DSSE = "happy-path-intoto-in-dsse-v3"  # DSSE envelope, dsse 0.0.1 entry, v0.3 certificate
REKOR2 = "rekor2-happy-path"  # staging Rekor v2, hashedrekord 0.0.2, RFC 3161 timestamp
V01 = "v0.1-dsse-intoto-0.0.2.sigstore.json"  # production intoto 0.0.2, promise only


def case(name: str) -> tuple[Path, Path, bytes]:
    """Bundle, trusted root and artifact of a conformance or sigstore-js fixture."""
    if name.endswith(".sigstore.json"):
        return (
            SIGSTORE_JS / name,
            SIGSTORE_JS / "trusted_root.json",
            (SIGSTORE_JS / "artifact.txt").read_bytes(),
        )
    directory = CONFORMANCE / name
    root = directory / "trusted_root.json"
    artifact = directory / "artifact"
    return (
        directory / "bundle.sigstore.json",
        root if root.is_file() else TRUSTED_ROOT_FILE,
        (artifact if artifact.is_file() else CONFORMANCE / "a.txt").read_bytes(),
    )


def bundle_data(name: str) -> Any:
    """A fixture's bundle as JSON data, to edit."""
    return json.loads(case(name)[0].read_text(encoding="utf-8"))


def root_data(name: str) -> Any:
    """The trusted root a fixture verifies against, as JSON data, to edit."""
    return json.loads(case(name)[1].read_text(encoding="utf-8"))


def verify(
    name: str,
    data: Any | None = None,
    *,
    root: Any | None = None,
    key: PublicKey | None = None,
    artifact: bytes | Literal["fixture"] | None = "fixture",
) -> VerifiedBundle:
    """Verify fixture `name` against its trusted root with its artifact; `data` and `root` are
    edited copies of its bundle and root, `key` and `artifact` override what is given."""
    _, root_path, fixture_artifact = case(name)
    bundle = parse_bundle(data if data is not None else bundle_data(name), source=name)
    trusted = (
        parse_trusted_root(root, source="x") if root is not None else load_trusted_root(root_path)
    )
    return verify_bundle(
        bundle,
        trusted,
        label=name,
        key=key,
        artifact=fixture_artifact if artifact == "fixture" else artifact,
    )


def failure(name: str, reason: str) -> str:
    """A pattern for the whole message a verification failure of fixture `name` must carry."""
    return (
        "^"
        + re.escape(
            f"provenance check failed for {name}: {reason}; do not bypass — keep the "
            "known-good pins"
        )
        + "$"
    )


def material(data: Any) -> Any:
    return data["verificationMaterial"]


def tlog(data: Any) -> Any:
    return material(data)["tlogEntries"][0]


def proof(data: Any) -> Any:
    return tlog(data)["inclusionProof"]
