"""Dataset use cases: add an immutable, content-addressed dataset version (files stored as blobs),
list and show datasets with their eligibility, record governance changes (consent, retention) as
new ledgered records, and prove that a record is, or is not, in a version.

Eligibility is judged on the *effective* manifest: the stored manifest with the latest governance
record of each field applied. Versions trained on an ineligible dataset (directly or through base
models) are flagged. Each write is one transaction with its ledger event. Knows nothing of
argument parsing or rendering.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.canonical import canonical_json
from modelward.core.names import parse_uri
from modelward.core.roles import Action
from modelward.errors import InputError, NotFoundError, VerificationError
from modelward.provenance.datasets import (
    Consent,
    DatasetManifest,
    build_dataset_manifest,
    eligibility,
    parse_consent,
    parse_retention_date,
)
from modelward.provenance.lineage import VersionLineage, downstream_of_dataset
from modelward.provenance.record_proofs import (
    prove_absence,
    prove_record,
    verify_record_absence,
    verify_record_inclusion,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.state_integrity import keeper_of
from modelward.services.subject_watch import sealed_subject_events
from modelward.services.users import require
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.provenance_repository import (
    DatasetFileRow,
    DatasetVersionRecord,
    GovernanceRecord,
    ProvenanceRepository,
)
from modelward.storage.metadata.registry_repository import RegistryRepository

_MAX_REASON = 2000


@dataclass(frozen=True)
class DatasetAddResult:
    record: DatasetVersionRecord
    created: bool
    manifest: DatasetManifest


def parse_dataset_uri(text: str) -> tuple[str, int]:
    """(name, number) of `datasets:/NAME/N` (also accepts `NAME/N`)."""
    if not text.startswith("datasets:/") and "/" in text and ":" not in text:
        text = f"datasets:/{text}"
    uri = parse_uri(text, kinds=("datasets",))
    if uri.kind != "datasets" or uri.name is None or uri.version is None:
        raise InputError(f"{text!r} is not a dataset version URI (datasets:/NAME/N)")
    return uri.name, uri.version


def stored_manifest(record: DatasetVersionRecord) -> DatasetManifest:
    return DatasetManifest.from_dict(json.loads(record.manifest_json))


def effective_manifest(conn: Connection, record: DatasetVersionRecord) -> DatasetManifest:
    """The stored manifest with the latest trusted governance change of each field applied
    (`trusted_governance`); VerificationError when the record or a change fails its check."""
    manifest = stored_manifest(record)
    for change in trusted_governance(conn, record):
        if change.field == "consent":
            manifest = dataclasses.replace(manifest, consent=parse_consent(change.value))
        elif change.field == "retention_until":
            retention = None if change.value is None else parse_retention_date(change.value)
            manifest = dataclasses.replace(manifest, retention_until=retention)
    return manifest


def trusted_governance(conn: Connection, record: DatasetVersionRecord) -> list[GovernanceRecord]:
    """A dataset version's consent and retention changes, oldest first, as the sealed ledger
    recorded them: the version row must match its sealed `dataset.add` event, and the changes are
    those of the sealed `dataset.governance` events about it. The `dataset_governance` rows are
    only a copy: an edited, inserted or deleted row changes nothing (the audit names it), and an
    event about the dataset that fails its seal refuses (VerificationError): a withdrawal that
    cannot be read is not taken as no withdrawal."""
    keeper = keeper_of(conn)
    if keeper is None:
        raise VerificationError(f"{record.uri}: cannot be checked without the ledger key")
    ledger = LedgerRepository(conn)
    try:
        added = ledger.event(record.ledger_seq)
    except NotFoundError:
        raise VerificationError(
            f"{record.uri}: its ledger event #{record.ledger_seq} is missing; it is not trusted"
        ) from None
    problem = keeper.event_problem(added)
    details = added.details
    if problem is None and (
        added.action != "dataset.add"
        or added.subject != record.uri
        or details.get("manifest_digest") != record.manifest_digest
        or stored_manifest(record).digest != record.manifest_digest
    ):
        problem = f"differs from what its ledger event #{added.seq} recorded"
    if problem is not None:
        raise VerificationError(f"{record.uri}: {problem}; it is not trusted")
    changes: list[GovernanceRecord] = []
    for event in reversed(sealed_subject_events(conn, keeper, record.uri, record.ledger_seq)):
        if event.action != "dataset.governance":
            continue
        problem = None
        field, value = event.details.get("field"), event.details.get("value")
        if problem is None and (
            event.details.get("manifest_digest") != record.manifest_digest
            or field not in ("consent", "retention_until")
            or not (value is None or isinstance(value, str))
        ):
            problem = f"ledger event #{event.seq} is not a governance change of this version"
        if problem is not None:
            raise VerificationError(
                f"{record.uri}: a governance change fails its check ({problem}); its consent "
                "and retention cannot be trusted"
            )
        changes.append(
            GovernanceRecord(
                str(field),
                value,
                str(event.details.get("reason", "")),
                event.recorded_at,
                event.actor,
                event.seq,
            )
        )
    return changes


def governance_state_check(conn: Connection) -> list[str]:
    """Audit hook (a `StateCheck`): every dataset version's governance rows against the sealed
    governance events about it (rows edited, inserted or deleted behind modelward's back)."""
    repo = ProvenanceRepository(conn)
    problems: list[str] = []
    for record in repo.all_dataset_versions(None):
        try:
            trusted = trusted_governance(conn, record)
        except VerificationError as exc:
            problems.append(str(exc))
            continue
        stored = repo.governance(record.id)
        if [_governance_key(g) for g in stored] != [_governance_key(g) for g in trusted]:
            problems.append(
                f"{record.uri}: its governance rows differ from the ledger's governance events "
                f"({len(stored)} rows, {len(trusted)} events; edited, inserted or deleted "
                "behind modelward's back); the ledger's are used"
            )
    return problems


def _governance_key(change: GovernanceRecord) -> tuple[object, ...]:
    return (change.field, change.value, change.reason, change.created_by, change.ledger_seq)


def lineage_records(conn: Connection) -> list[VersionLineage]:
    """Every model version with the datasets and base model its provenance links name (rows,
    not verified: readers use `services.provenance.verified_lineage_records`)."""
    registry = RegistryRepository(conn)
    links = ProvenanceRepository(conn).all_version_provenance()
    aliases: dict[tuple[str, int], list[str]] = {}
    for model, alias, number in registry.all_aliases():
        aliases.setdefault((model, number), []).append(f"models:/{model}@{alias}")
    found = []
    for version in registry.all_versions():
        link = links.get(version.id)
        found.append(
            VersionLineage(
                uri=version.uri,
                root_digest=version.root_digest,
                datasets=link.datasets if link else (),
                base_model=link.base_model if link else None,
                aliases=tuple(aliases.get((version.model, version.number), ())),
            )
        )
    return found


def today() -> dt.date:
    return utc_now().date()


class DatasetService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    # -- writing ----------------------------------------------------------------------------

    def add(
        self,
        path: Path,
        *,
        name: str,
        license_id: str,
        source: str,
        consent: str = Consent.UNKNOWN.value,
        retention_until: str | None = None,
        owner: str | None = None,
        labeling_qa: Path | None = None,
    ) -> DatasetAddResult:
        """Hash and validate the dataset, store its files as blobs, then make it the next
        version of `name` (or report the version that has the same manifest)."""
        path = Path(path)
        manifest = build_dataset_manifest(
            path,
            name=name,
            license_id=license_id,
            source=source,
            consent=consent,
            retention_until=retention_until,
            owner=owner,
            labeling_qa=labeling_qa,
        )
        for entry in manifest.files:
            real = path if path.is_file() else path.joinpath(*PurePosixPath(entry.path).parts)
            self.ctx.blobs.put_file(real, expected_digest=entry.sha256)
        if labeling_qa is not None and manifest.labeling_qa_digest is not None:
            self.ctx.blobs.put_file(labeling_qa, expected_digest=manifest.labeling_qa_digest)
        manifest_json = canonical_json(manifest.to_dict()).decode("utf-8")
        now = format_time(utc_now())
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.ATTACH_PROVENANCE)
            repo = ProvenanceRepository(conn)
            dataset_id = repo.dataset_id(name)
            if dataset_id is None:
                dataset_id = repo.create_dataset(name, now, self.actor)
            existing = repo.find_by_manifest(dataset_id, manifest.digest)
            if existing is not None:
                return DatasetAddResult(existing, created=False, manifest=manifest)
            number = repo.next_dataset_number(dataset_id)
            event = LedgerRepository(conn).append(
                self.actor,
                "dataset.add",
                f"datasets:/{name}/{number}",
                {
                    "dataset": name,
                    "version": number,
                    "manifest_digest": manifest.digest,
                    "data_digest": manifest.data_digest,
                    "files": len(manifest.files),
                    "records": manifest.record_count,
                    "license": manifest.license,
                    "consent": manifest.consent.value,
                },
                utc_now(),
            )
            rows = [
                DatasetFileRow(
                    f.path,
                    f.sha256,
                    f.size,
                    f.records.format.value if f.records else None,
                    f.records.count if f.records else None,
                )
                for f in manifest.files
            ]
            version_id = repo.insert_dataset_version(
                dataset_id,
                number,
                manifest_json,
                (manifest.digest, manifest.data_digest, manifest.labeling_qa_digest),
                rows,
                now,
                self.actor,
                event.seq,
            )
            record = repo.dataset_version_by_id(version_id)
        return DatasetAddResult(record, created=True, manifest=manifest)

    def set_governance(
        self,
        ref: str,
        *,
        consent: str | None = None,
        retention_until: str | None = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Record new consent and/or retention facts for a dataset version (never an edit)."""
        name, number = parse_dataset_uri(ref)
        changes: list[tuple[str, str | None]] = []
        if consent is not None:
            changes.append(("consent", parse_consent(consent).value))
        if retention_until is not None:
            changes.append(("retention_until", parse_retention_date(retention_until).isoformat()))
        if not changes:
            raise InputError("nothing to change: give a consent or a retention date")
        if len(reason) > _MAX_REASON or any(ord(c) < 32 for c in reason):
            raise InputError(f"the reason must be printable and at most {_MAX_REASON} characters")
        now = format_time(utc_now())
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.ATTACH_PROVENANCE)
            repo = ProvenanceRepository(conn)
            record = repo.dataset_version(name, number)
            ledger = LedgerRepository(conn)
            for field_name, value in changes:
                event = ledger.append(
                    self.actor,
                    "dataset.governance",
                    record.uri,
                    {
                        "dataset": name,
                        "version": number,
                        "field": field_name,
                        "value": value,
                        "reason": reason,
                        "manifest_digest": record.manifest_digest,
                    },
                    utc_now(),
                )
                repo.add_governance(
                    record.id, field_name, value, reason, now, self.actor, event.seq
                )
        return self.show(record.uri)

    # -- reading ----------------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[dict[str, Any]]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = ProvenanceRepository(conn)
            rows = []
            for record in repo.all_dataset_versions(name):
                manifest = effective_manifest(conn, record)
                rows.append(
                    {
                        **record.to_dict(),
                        "license": manifest.license,
                        "consent": manifest.consent.value,
                        "retention_until": _date(manifest.retention_until),
                        "files": len(manifest.files),
                        "records": manifest.record_count,
                        "size": manifest.total_size,
                        "eligibility": eligibility(manifest, today()).to_dict(),
                    }
                )
        if name is not None and not rows:
            raise NotFoundError(f"no dataset named {name!r}")
        return rows

    def show(self, ref: str) -> dict[str, Any]:
        name, number = parse_dataset_uri(ref)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            repo = ProvenanceRepository(conn)
            record = repo.dataset_version(name, number)
            manifest = effective_manifest(conn, record)
            verdict = eligibility(manifest, today())
            downstream = downstream_of_dataset(record.uri, self._verified_lineage(conn))
            return {
                **record.to_dict(),
                "manifest": stored_manifest(record).to_dict(),
                "effective": {
                    "license": manifest.license,
                    "consent": manifest.consent.value,
                    "retention_until": _date(manifest.retention_until),
                    "owner": manifest.owner,
                    "source": manifest.source,
                },
                "governance": [g.to_dict() for g in trusted_governance(conn, record)],
                "eligibility": verdict.to_dict(),
                "downstream": [
                    {"uri": v.uri, "root_digest": v.root_digest, "flagged": not verdict.eligible}
                    for v in downstream
                ],
            }

    def _verified_lineage(self, conn: Connection) -> Sequence[VersionLineage]:
        """Versions with the datasets their verified provenance names (see `provenance`)."""
        from modelward.services.attestation_verify import AttestationVerifier
        from modelward.services.provenance import verified_lineage_records
        from modelward.signing.keys import Verifier

        verifier = AttestationVerifier.for_registry(conn, Verifier(self.ctx.signer.public_key))
        return verified_lineage_records(conn, verifier)[0]

    def prove(self, ref: str, record: str) -> dict[str, Any]:
        """An inclusion proof of the record at FILE:LINE_OR_ROW (or LINE_OR_ROW when the version
        has one structured file), checked against the stored record root."""
        manifest = self._manifest(ref)
        file_part, _, locator_text = record.rpartition(":")
        if not locator_text.isdigit() or int(locator_text) < 1:
            raise InputError(f"{record!r}: expected FILE:LINE_OR_ROW with a number from 1")
        entry = self._structured_file(manifest, file_part or None)
        assert entry.records is not None
        with tempfile.TemporaryDirectory(prefix="modelward-prove-") as folder:
            local = self._fetch(entry.sha256, Path(folder), entry.path)
            proof = prove_record(local, int(locator_text), entry.records.format, label=entry.path)
        verify_record_inclusion(proof, entry.records)
        return {"dataset": ref, "included": True, "proof": proof.to_dict()}

    def prove_absent(self, ref: str, record_hash: str, file: str | None = None) -> dict[str, Any]:
        """Absence proofs of a record hash for every structured file (or the one named); a
        VerificationError if the record is in one of them."""
        manifest = self._manifest(ref)
        entries = (
            [self._structured_file(manifest, file)]
            if file
            else [f for f in manifest.files if f.records is not None]
        )
        if not entries:
            raise InputError(f"{ref} has no JSONL, CSV or Parquet file to prove absence in")
        proofs = []
        with tempfile.TemporaryDirectory(prefix="modelward-prove-") as folder:
            for entry in entries:
                assert entry.records is not None
                local = self._fetch(entry.sha256, Path(folder), entry.path)
                proof = prove_absence(local, record_hash, entry.records.format, label=entry.path)
                verify_record_absence(proof, entry.records)
                proofs.append(proof.to_dict())
        return {"dataset": ref, "absent": True, "proofs": proofs}

    def _manifest(self, ref: str) -> DatasetManifest:
        name, number = parse_dataset_uri(ref)
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return stored_manifest(ProvenanceRepository(conn).dataset_version(name, number))

    def _fetch(self, digest: str, folder: Path, label: str) -> Path:
        target = folder / f"{len(list(folder.iterdir()))}{PurePosixPath(label).suffix}"
        self.ctx.blobs.copy_to(digest, target)
        return target

    @staticmethod
    def _structured_file(manifest: DatasetManifest, path: str | None) -> Any:
        structured = [f for f in manifest.files if f.records is not None]
        if path is None:
            if len(structured) != 1:
                raise InputError(
                    f"the dataset has {len(structured)} JSONL/CSV/Parquet files; name one as "
                    "FILE:LINE_OR_ROW"
                )
            return structured[0]
        for entry in structured:
            if entry.path == path:
                return entry
        names = ", ".join(f.path for f in structured) or "none"
        raise NotFoundError(f"the dataset has no JSONL/CSV/Parquet file {path!r} (it has {names})")


def ineligible_datasets(conn: Connection, uris: Sequence[str]) -> dict[str, list[str]]:
    """For each dataset URI that is not eligible today, the reasons."""
    repo = ProvenanceRepository(conn)
    found: dict[str, list[str]] = {}
    for uri in uris:
        name, number = parse_dataset_uri(uri)
        verdict = eligibility(effective_manifest(conn, repo.dataset_version(name, number)), today())
        if not verdict.eligible:
            found[uri] = verdict.reasons
    return found


def _date(value: dt.date | None) -> str | None:
    return value.isoformat() if value else None
