"""Checks on deployed states before they are restored, and expired overrides.

`state_problems` re-verifies a release's state the way a promotion would have to trust it now:
the version still exists with the recorded root digest, its stored manifest hashes to that
digest, the registry's signature over it verifies with the registry key, every blob (bundle
files, prompt templates, policy files) is re-hashed, and no dataset it was trained on has become
ineligible (consent withdrawn, retention passed, licence revoked: the dataset service's
eligibility verdict). An empty list means the state may be restored.

`note_expired_overrides` finds the environments whose current release is an override past its
expiry and writes one `release.override_expired` ledger event per such release (the first time
a write command notices it). Reads through repositories on the caller's connection; commits
nothing itself.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.policy import format_timestamp
from modelward.core.release import DeployedState, Release
from modelward.errors import DigestMismatchError, ModelwardError, NotFoundError, StorageError
from modelward.signing.keys import Verifier
from modelward.signing.oms import SignatureBundle, manifest_from_statement, verify_with_key
from modelward.storage.blobs import BlobStore
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.metadata.registry_repository import RegistryRepository, VersionRecord

OVERRIDE_EXPIRED = "release.override_expired"
REGISTRY_SIGNATURE = "registry-signature"


def state_problems(
    conn: Connection,
    blobs: BlobStore,
    registry_key: Verifier,
    state: DeployedState,
    *,
    eligibility: bool = True,
) -> list[str]:
    """Why `state` must not be restored now (empty: it may be). `eligibility=False` checks
    integrity only (bytes and signature), e.g. to fetch a release for inspection."""
    where = f"models:/{state.model}/{state.version}"
    repo = RegistryRepository(conn)
    try:
        record = repo.version(state.model, state.version)
    except NotFoundError:
        return [f"{where}: the version no longer exists"]
    problems: list[str] = []
    if "sha256:" + record.root_digest != state.bundle_digest:
        problems.append(
            f"{where}: the release deploys bundle {state.bundle_digest}, but the version's root "
            f"digest is sha256:{record.root_digest}"
        )
    problems += _signature_problems(repo, record, registry_key)
    try:
        manifest = record.manifest()
    except ModelwardError as exc:
        return [*problems, f"{where}: the stored manifest is unreadable: {exc}"]
    if manifest.root_digest != record.root_digest:
        problems.append(f"{where}: the stored manifest does not hash to its root digest")
    for entry in manifest.files:
        label = "the model file" if entry.name == "." else f"file {entry.name}"
        problems += _blob_problems(blobs, entry.digest, f"{where}: {label}")
    for what, digests in (
        ("prompt template", state.prompt_templates),
        ("policy file", state.policy_files),
    ):
        for name, digest in digests.items():
            problems += _blob_problems(
                blobs, str(digest).removeprefix("sha256:"), f"{where}: {what} {name}"
            )
    if eligibility:
        problems += _eligibility_problems(conn, record, registry_key)
    return problems


def _signature_problems(
    repo: RegistryRepository, record: VersionRecord, registry_key: Verifier
) -> list[str]:
    stored = repo.attestations(record.id, REGISTRY_SIGNATURE)
    if not stored:
        return [f"{record.uri}: the registry signature is missing"]
    try:
        bundle = SignatureBundle.from_dict(json.loads(stored[0].document))
        signed = manifest_from_statement(verify_with_key(bundle, registry_key))
    except (ModelwardError, ValueError) as exc:
        return [f"{record.uri}: the registry signature does not verify: {exc}"]
    if signed.root_digest != record.root_digest:
        return [f"{record.uri}: the registry signature covers sha256:{signed.root_digest}"]
    return []


def _blob_problems(blobs: BlobStore, digest: str, label: str) -> list[str]:
    hasher = hashlib.sha256()
    try:
        for chunk in blobs.read_chunks(digest):
            hasher.update(chunk)
    except DigestMismatchError:
        return [f"{label}: stored bytes do not match sha256:{digest}"]
    except NotFoundError:
        return [f"{label}: blob sha256:{digest} is missing"]
    except (StorageError, ModelwardError) as exc:
        return [f"{label}: blob sha256:{digest} cannot be read: {exc}"]
    if hasher.hexdigest() != digest:
        return [f"{label}: stored bytes hash to sha256:{hasher.hexdigest()}, not sha256:{digest}"]
    return []


def _eligibility_problems(
    conn: Connection, record: VersionRecord, registry_key: Verifier
) -> list[str]:
    """Datasets the version was trained on that are not eligible today (the provenance
    service's verdict, which applies the latest governance records)."""
    from modelward.services.attestation_verify import AttestationVerifier
    from modelward.services.provenance import provenance_facts_in

    try:
        verifier = AttestationVerifier.for_registry(conn, registry_key)
        facts = provenance_facts_in(conn, record, verifier)
    except ModelwardError as exc:
        return [f"{record.uri}: dataset eligibility cannot be checked: {exc}"]
    ineligible = facts.get("ineligible_datasets") or {}
    problems = []
    if isinstance(ineligible, Mapping):
        for uri, reasons in sorted(ineligible.items()):
            why = "; ".join(str(r) for r in reasons) if isinstance(reasons, list) else str(reasons)
            problems.append(f"{record.uri}: trained on {uri}, which is not eligible: {why}")
    if facts.get("datasets_eligible") is False and not problems:
        problems.append(f"{record.uri}: trained on a dataset that is not eligible")
    return problems


@dataclass(frozen=True)
class ExpiredOverride:
    """An environment whose current release is an override past its expiry."""

    model: str
    environment: str
    release_id: str
    version: int
    expires_at: datetime
    noted_now: bool  # this call wrote the ledger event (False: it was there already)

    def message(self) -> str:
        return (
            f"override expired: models:/{self.model} in {self.environment} is still on override "
            f"release {self.release_id} (version {self.version}), which expired at "
            f"{format_timestamp(self.expires_at)}; promote normally or roll back in "
            f"{self.environment} to resolve it"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "release_id": self.release_id,
            "version": self.version,
            "expires_at": format_timestamp(self.expires_at),
            "noted_now": self.noted_now,
            "message": self.message(),
        }


def expired_current(conn: Connection, model: str, now: datetime) -> dict[str, Release]:
    """The environments of `model` whose current release is an expired override."""
    current = GateRepository(conn).current_releases_of_model(model)
    return {env: release for env, release in current.items() if release.override_expired(now)}


def note_expired_overrides(
    conn: Connection, model: str, now: datetime, actor: str
) -> list[ExpiredOverride]:
    """Write a `release.override_expired` event for each expired override of `model` not yet
    noted in the ledger; call inside a write transaction. Returns every expired one."""
    gate = GateRepository(conn)
    found = []
    for environment, release in sorted(expired_current(conn, model, now).items()):
        assert release.override is not None
        subject = f"models:/{model}@{environment}"
        noted = release.release_id in gate.noted_release_events(OVERRIDE_EXPIRED, subject)
        if not noted:
            LedgerRepository(conn).append(
                actor,
                OVERRIDE_EXPIRED,
                subject,
                {
                    "model": model,
                    "environment": environment,
                    "release_id": release.release_id,
                    "version": release.version,
                    "override": release.override.to_dict(),
                    "noticed_at": format_timestamp(now),
                },
                now,
            )
        found.append(
            ExpiredOverride(
                model,
                environment,
                release.release_id,
                release.version,
                release.override.expires_at,
                noted_now=not noted,
            )
        )
    return found


def release_authority_check(conn: Connection) -> list[str]:
    """Audit hook (a `StateCheck`): every release was authorised (`core.release_authority`): by
    an allowing decision about its version in its environment, or, for a rollback, by restoring
    an earlier release of that environment whose own authority holds. The rows' agreement with
    the ledger is `state_integrity_check`'s; this checks what the agreeing rows say."""
    from modelward.core.dsse import Envelope
    from modelward.core.intoto import Statement
    from modelward.core.release_authority import DecisionSummary, release_authority_problem
    from modelward.policy.vsa import decision_from_statement

    repo = RegistryRepository(conn)
    gate = GateRepository(conn)
    decisions: dict[str, DecisionSummary] = {}
    unreadable: list[str] = []
    for record in repo.all_versions():
        for row in gate.decisions(record.id):
            try:
                envelope = Envelope.from_dict(json.loads(row.envelope))
                decision = decision_from_statement(Statement.from_bytes(envelope.payload))
            except (ModelwardError, ValueError, TypeError, KeyError) as exc:
                unreadable.append(f"{record.uri}: gate decision {row.id} is unreadable: {exc}")
                continue
            if decision.digest() != row.decision_digest or decision.allowed != row.allowed:
                unreadable.append(
                    f"{record.uri}: gate decision {row.id}: its VSA records another decision "
                    "than its row"
                )
                continue
            decisions[row.decision_digest] = DecisionSummary(
                model=record.model,
                version=record.number,
                environment=row.environment,
                allowed=row.allowed,
                override=None if decision.override is None else decision.override.to_dict(),
            )
    problems = list(unreadable)
    histories: list[tuple[str, str, list[Release]]] = []
    for model, environment in gate.release_environments():
        try:
            history = [row.release for row in gate.releases(model, environment)]
        except (ModelwardError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"models:/{model} in {environment}: a release is unreadable: {exc}")
            continue
        histories.append((model, environment, history))
    releases = {r.release_id: r for _, _, history in histories for r in history}
    for model, environment, history in histories:
        for release in history:
            problem = release_authority_problem(release, decisions, releases)
            if problem is not None:
                problems.append(
                    f"release {release.release_id} (models:/{model}/{release.version} in "
                    f"{environment}) was not authorised: it {problem}"
                )
    return problems
