"""npm provenance: verify the attestations a version announces, offline, and fail closed.

A version that carries `dist.attestations` has two sigstore bundles at that URL: the SLSA
provenance (signed with a short-lived Fulcio certificate issued to the CI workflow that built
it) and the npm publish attestation (signed with the registry's own key).  Both wrap an in-toto
statement whose single subject must be the package's purl (`pkg:npm/%40img/sharp-linux-x64@…`)
with the tarball's sha512.  `bot.verify.sigstore` does the cryptography; this module adds the
npm shapes, the identity policy per package family, and the policy:

`verify.provenance`: `required` (every pinned version must have verified provenance),
`if-published` (verify where announced) or `off`.  Under `required` and `if-published` a version
that lost the provenance its predecessor had is blocked ("no downgrade").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import quote

from bot.config import Policy
from bot.errors import InvalidRemoteData
from bot.sources.http import HttpSource, host_of
from bot.sources.npm.models import PackageVersion
from bot.sources.npm.registry import unexpected_answer
from bot.sources.npm.settings import NpmSettings
from bot.verify.signatures import RegistryKey, TrustedKeys
from bot.verify.sigstore import (
    Bundle,
    Envelope,
    Identity,
    IdentityPolicy,
    TrustedRoot,
    certificate_identity,
    fail,
    parse_bundle,
    require_object,
    verify_bundle,
)

ATTESTATIONS_LIMIT = 8 * 1024 * 1024
SLSA_PREDICATES = ("https://slsa.dev/provenance/v1", "https://slsa.dev/provenance/v0.2")
PUBLISH_PREDICATE = "https://github.com/npm/attestation/tree/main/specs/publish/v0.1"
STATEMENT_TYPES = ("https://in-toto.io/Statement/v1", "https://in-toto.io/Statement/v0.1")
IN_TOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"

ProvenanceStatus = Literal["verified", "absent", "off"]
PublishStatus = Literal["verified", "absent", "not verifiable", "off"]


def package_purl(name: str, version: str) -> str:
    """The package URL npm puts in attestation subjects: `pkg:npm/%40scope/name@version`."""
    return f"pkg:npm/{quote(name)}@{version}"  # quote keeps the scope's "/" (its default safe)


def integrity_hex(integrity: str) -> str:
    """An `sha512-<base64>` SRI string as lowercase hex (attestation subjects use hex)."""
    return base64.b64decode(integrity.removeprefix("sha512-")).hex()


@dataclass(frozen=True)
class Attestation:
    """One entry of the registry's attestations document."""

    predicate_type: str
    bundle: Mapping[str, Any]


def parse_attestations(data: object, *, source: str) -> tuple[Attestation, ...]:
    """Validate the registry's `{"attestations": [{"predicateType", "bundle"}]}` document."""
    entries = data.get("attestations") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise InvalidRemoteData(f'{source}: expected {{"attestations": [...]}}')
    attestations = []
    for entry in entries:
        if not isinstance(entry, dict) or not isinstance(entry.get("predicateType"), str):
            raise InvalidRemoteData(f"{source}: an attestation has no predicateType")
        attestations.append(
            Attestation(
                entry["predicateType"], require_object(entry.get("bundle"), "bundle", source)
            )
        )
    return tuple(attestations)


def fetch_attestations(
    url: str, http: HttpSource, npm_settings: NpmSettings
) -> tuple[Attestation, ...] | None:
    """The attestations at `url` (`dist.attestations.url`); `None` when the registry has none."""
    if not url.startswith(("https://", "http://")):
        raise InvalidRemoteData(f"dist.attestations.url {url!r} is not an http(s) URL")
    headers = {"Accept": "application/json", **npm_settings.auth_headers(url)}
    body = http.fetch("GET", url, headers=headers, limit=ATTESTATIONS_LIMIT)
    if body.status_code == 404:
        return None
    if body.status_code != 200:
        raise unexpected_answer(url, "attestations", body.status_code)
    return parse_attestations(body.json(), source=f"{host_of(url)} attestations")


# --- statements -------------------------------------------------------------------------------


def check_statement(
    envelope: Envelope, manifest: PackageVersion, predicate_types: Sequence[str], label: str
) -> Mapping[str, Any]:
    """The in-toto statement must name exactly this purl with the tarball's sha512."""
    if envelope.payload_type != IN_TOTO_PAYLOAD_TYPE:
        raise fail(label, f"the envelope holds {envelope.payload_type!r}, not in-toto")
    try:
        statement = json.loads(envelope.payload)
    except ValueError as error:
        raise fail(label, "the attestation payload is not JSON") from error
    if not isinstance(statement, dict) or statement.get("_type") not in STATEMENT_TYPES:
        raise fail(label, "the attestation payload is not an in-toto statement")
    if statement.get("predicateType") not in predicate_types:
        raise fail(label, f"the statement's predicate is {statement.get('predicateType')!r}")
    purl = package_purl(manifest.name, manifest.version)
    subjects = statement.get("subject")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(subjects[0], dict):
        raise fail(label, "the statement must have exactly one subject")
    subject = subjects[0]
    if subject.get("name") != purl:
        raise fail(label, f"the statement's subject is {subject.get('name')!r}, not {purl}")
    digest = subject.get("digest")
    expected = integrity_hex(manifest.dist.integrity)
    if not isinstance(digest, dict) or digest.get("sha512") != expected:
        raise fail(label, "the statement's subject sha512 differs from the tarball's integrity")
    predicate = statement.get("predicate")
    return predicate if isinstance(predicate, dict) else {}


@dataclass(frozen=True)
class ProvenanceFacts:
    """What a verified SLSA provenance bundle proves."""

    identity: Identity
    log_index: int
    signed_at: datetime


def verify_slsa_provenance(
    bundle: Bundle,
    manifest: PackageVersion,
    root: TrustedRoot,
    identity_policy: IdentityPolicy,
) -> ProvenanceFacts:
    """Fully verify a certificate-signed SLSA provenance bundle for `manifest`."""
    label = f"{manifest.name}@{manifest.version}"
    if bundle.envelope is None:
        raise fail(label, "the provenance bundle holds no DSSE envelope")
    verified = verify_bundle(bundle, root, label=label)
    assert verified.certificate is not None  # noqa: S101 - verify_bundle needs one without a key
    identity = certificate_identity(verified.certificate)
    problems = identity_policy.problems(identity)
    if problems:
        raise fail(label, "the provenance signer is not allowed: " + "; ".join(problems))
    repository = identity.source_repository
    assert repository is not None  # noqa: S101 - the policy admits named repositories only
    predicate = check_statement(bundle.envelope, manifest, SLSA_PREDICATES, label)
    definition = predicate.get("buildDefinition") or {}
    workflow = (definition.get("externalParameters") or {}).get("workflow")
    if (
        isinstance(workflow, dict)
        and workflow.get("repository") is not None
        and str(workflow["repository"]).lower() != repository.lower()
    ):
        raise fail(label, "the provenance predicate names another repository than its signer")
    return ProvenanceFacts(identity, verified.entry.log_index, verified.signed_at)


def verify_publish_attestation(
    bundle: Bundle, manifest: PackageVersion, root: TrustedRoot, key: RegistryKey
) -> datetime:
    """Verify the registry-key-signed npm publish attestation for `manifest`."""
    label = f"{manifest.name}@{manifest.version}"
    if bundle.envelope is None:
        raise fail(label, "the publish attestation holds no DSSE envelope")
    verified = verify_bundle(bundle, root, label=label, key=key.public_key)
    if not key.valid_at(verified.signed_at):
        raise fail(label, f"registry key {key.keyid} had expired when the attestation was logged")
    predicate = check_statement(bundle.envelope, manifest, (PUBLISH_PREDICATE,), label)
    if predicate.get("name") != manifest.name or predicate.get("version") != manifest.version:
        raise fail(label, "the publish attestation names another package or version")
    return verified.signed_at


# --- policy -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProvenanceCheck:
    """The provenance outcome for one package version, as recorded in the audit trail."""

    name: str
    version: str
    policy: Policy
    status: ProvenanceStatus
    publish_attestation: PublishStatus
    previous_version: str | None = None
    previous_had_provenance: bool = False
    facts: ProvenanceFacts | None = None
    notes: tuple[str, ...] = field(default=())

    def as_evidence(self) -> dict[str, Any]:
        """The check as audit evidence."""
        identity = self.facts.identity if self.facts else None
        return {
            "name": self.name,
            "version": self.version,
            "policy": self.policy,
            "provenance": self.status,
            "verified": self.status == "verified",
            "publish_attestation": self.publish_attestation,
            "previous_version": self.previous_version,
            "previous_had_provenance": self.previous_had_provenance,
            "issuer": identity.issuer if identity else None,
            "source_repository": identity.source_repository if identity else None,
            "source_ref": identity.source_ref if identity else None,
            "signer": identity.subject if identity else None,
            "log_index": self.facts.log_index if self.facts else None,
            "signed_at": self.facts.signed_at.isoformat() if self.facts else None,
            "notes": list(self.notes),
        }


def announces_provenance(manifest: PackageVersion) -> bool:
    """Whether the packument announces SLSA provenance for this version."""
    return manifest.dist.attestations_url is not None and (
        manifest.dist.provenance_predicate in SLSA_PREDICATES
    )


def check_provenance(
    manifest: PackageVersion,
    attestations: tuple[Attestation, ...] | None,
    *,
    previous: PackageVersion | None,
    policy: Policy,
    root: TrustedRoot,
    identity_policy: IdentityPolicy,
    keys: TrustedKeys,
) -> ProvenanceCheck:
    """Apply `policy` and "no downgrade" to one version's attestations (None: none served)."""
    label = f"{manifest.name}@{manifest.version}"
    previous_had = previous is not None and announces_provenance(previous)
    previous_version = previous.version if previous else None

    def result(
        status: ProvenanceStatus,
        publish: PublishStatus,
        facts: ProvenanceFacts | None = None,
        notes: tuple[str, ...] = (),
    ) -> ProvenanceCheck:
        return ProvenanceCheck(
            manifest.name,
            manifest.version,
            policy,
            status,
            publish,
            previous_version,
            previous_had,
            facts,
            notes,
        )

    if policy == "off":
        return result("off", "off")
    by_type = {item.predicate_type: item for item in attestations or ()}
    provenance = next((by_type[kind] for kind in SLSA_PREDICATES if kind in by_type), None)
    if provenance is None:
        if manifest.dist.attestations_url is not None and attestations is None:
            raise fail(label, "the packument announces attestations but the registry serves none")
        if announces_provenance(manifest):
            raise fail(label, "the packument announces SLSA provenance but none is served")
        if policy == "required":
            raise fail(label, "policy requires provenance and this version has none")
        if previous_had:
            raise fail(
                label,
                f"{previous_version} had provenance and this version has none (no downgrade)",
            )
    facts = (
        verify_slsa_provenance(
            parse_bundle(provenance.bundle, source=f"{label} provenance"),
            manifest,
            root,
            identity_policy,
        )
        if provenance is not None
        else None
    )
    publish_status: PublishStatus = "absent"
    notes: list[str] = []
    publish = by_type.get(PUBLISH_PREDICATE)
    if publish is not None:
        bundle = parse_bundle(publish.bundle, source=f"{label} publish attestation")
        key = keys.find(bundle.key_hint) if bundle.key_hint else None
        if key is not None:
            verify_publish_attestation(bundle, manifest, root, key)
            publish_status = "verified"
        elif keys.keys or policy == "required":
            raise fail(label, f"the publish attestation names unknown key {bundle.key_hint!r}")
        else:
            publish_status = "not verifiable"
            notes.append(f"{host_of(keys.registry)} publishes no keys for the publish attestation")
    return result("verified" if facts else "absent", publish_status, facts, tuple(notes))
