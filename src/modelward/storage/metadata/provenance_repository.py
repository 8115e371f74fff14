"""All SQL of provenance: datasets, dataset versions and files, governance records, and the links
from model versions to the datasets and base model their provenance names.

Bound to one connection (one transaction, owned by the calling service). Never commits; never
updates or deletes a row: governance changes are new records, the latest of each field wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from modelward.errors import NotFoundError
from modelward.storage.metadata.provenance_tables import (
    dataset_files,
    dataset_governance,
    dataset_versions,
    datasets,
    version_datasets,
    version_provenance,
)


@dataclass(frozen=True)
class DatasetVersionRecord:
    id: int
    name: str
    number: int
    manifest_json: str
    manifest_digest: str
    data_digest: str
    labeling_qa_digest: str | None
    created_at: str
    created_by: str
    ledger_seq: int

    @property
    def uri(self) -> str:
        return f"datasets:/{self.name}/{self.number}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "name": self.name,
            "version": self.number,
            "manifest_digest": self.manifest_digest,
            "data_digest": self.data_digest,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "ledger_seq": self.ledger_seq,
        }


@dataclass(frozen=True)
class DatasetFileRow:
    path: str
    digest: str
    size: int
    record_format: str | None
    record_count: int | None


@dataclass(frozen=True)
class GovernanceRecord:
    field: str
    value: str | None
    reason: str
    created_at: str
    created_by: str
    ledger_seq: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "value": self.value,
            "reason": self.reason,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "ledger_seq": self.ledger_seq,
        }


@dataclass(frozen=True)
class VersionProvenanceRecord:
    version_id: int
    attestation_digest: str
    base_model: str | None
    signer_key: str
    datasets: tuple[str, ...]


_DATASET_VERSION_COLUMNS = (
    dataset_versions.c.id,
    datasets.c.name,
    dataset_versions.c.number,
    dataset_versions.c.manifest,
    dataset_versions.c.manifest_digest,
    dataset_versions.c.data_digest,
    dataset_versions.c.labeling_qa_digest,
    dataset_versions.c.created_at,
    dataset_versions.c.created_by,
    dataset_versions.c.ledger_seq,
)


def _dataset_version(row: Any) -> DatasetVersionRecord:
    return DatasetVersionRecord(*tuple(row)[: len(_DATASET_VERSION_COLUMNS)])


_JOINED = dataset_versions.join(datasets, datasets.c.id == dataset_versions.c.dataset_id)


class ProvenanceRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    # -- datasets ---------------------------------------------------------------------------

    def dataset_id(self, name: str) -> int | None:
        return self._conn.execute(select(datasets.c.id).where(datasets.c.name == name)).scalar()

    def create_dataset(self, name: str, created_at: str, created_by: str) -> int:
        result = self._conn.execute(
            insert(datasets).values(name=name, created_at=created_at, created_by=created_by)
        )
        key = result.inserted_primary_key
        assert key is not None
        return int(key[0])

    def next_dataset_number(self, dataset_id: int) -> int:
        current = self._conn.execute(
            select(func.max(dataset_versions.c.number)).where(
                dataset_versions.c.dataset_id == dataset_id
            )
        ).scalar()
        return int(current or 0) + 1

    def find_by_manifest(
        self, dataset_id: int, manifest_digest: str
    ) -> DatasetVersionRecord | None:
        row = self._conn.execute(
            select(*_DATASET_VERSION_COLUMNS)
            .select_from(_JOINED)
            .where(
                dataset_versions.c.dataset_id == dataset_id,
                dataset_versions.c.manifest_digest == manifest_digest,
            )
        ).first()
        return None if row is None else _dataset_version(row)

    def insert_dataset_version(
        self,
        dataset_id: int,
        number: int,
        manifest_json: str,
        digests: tuple[str, str, str | None],
        files: list[DatasetFileRow],
        created_at: str,
        created_by: str,
        ledger_seq: int,
    ) -> int:
        result = self._conn.execute(
            insert(dataset_versions).values(
                dataset_id=dataset_id,
                number=number,
                manifest=manifest_json,
                manifest_digest=digests[0],
                data_digest=digests[1],
                labeling_qa_digest=digests[2],
                created_at=created_at,
                created_by=created_by,
                ledger_seq=ledger_seq,
            )
        )
        key = result.inserted_primary_key
        assert key is not None
        version_id = int(key[0])
        rows = [
            {
                "dataset_version_id": version_id,
                "path": f.path,
                "digest": f.digest,
                "size": f.size,
                "record_format": f.record_format,
                "record_count": f.record_count,
            }
            for f in files
        ]
        self._conn.execute(insert(dataset_files), rows)
        return version_id

    def dataset_version(self, name: str, number: int) -> DatasetVersionRecord:
        row = self._conn.execute(
            select(*_DATASET_VERSION_COLUMNS)
            .select_from(_JOINED)
            .where(datasets.c.name == name, dataset_versions.c.number == number)
        ).first()
        if row is None:
            if self.dataset_id(name) is None:
                raise NotFoundError(f"no dataset named {name!r}")
            raise NotFoundError(f"dataset {name!r} has no version {number}")
        return _dataset_version(row)

    def dataset_version_by_id(self, dataset_version_id: int) -> DatasetVersionRecord:
        row = self._conn.execute(
            select(*_DATASET_VERSION_COLUMNS)
            .select_from(_JOINED)
            .where(dataset_versions.c.id == dataset_version_id)
        ).first()
        if row is None:
            raise NotFoundError(f"no dataset version with id {dataset_version_id}")
        return _dataset_version(row)

    def all_dataset_versions(self, name: str | None = None) -> list[DatasetVersionRecord]:
        query = select(*_DATASET_VERSION_COLUMNS).select_from(_JOINED)
        if name is not None:
            query = query.where(datasets.c.name == name)
        rows = self._conn.execute(query.order_by(datasets.c.name, dataset_versions.c.number))
        return [_dataset_version(row) for row in rows]

    def dataset_digests(self) -> set[str]:
        """Every blob digest a dataset version refers to (files and labelling-QA reports)."""
        found = set(self._conn.execute(select(dataset_files.c.digest).distinct()).scalars())
        found |= {
            d
            for d in self._conn.execute(
                select(dataset_versions.c.labeling_qa_digest).distinct()
            ).scalars()
            if d
        }
        return found

    # -- governance -------------------------------------------------------------------------

    def add_governance(
        self,
        dataset_version_id: int,
        field: str,
        value: str | None,
        reason: str,
        created_at: str,
        created_by: str,
        ledger_seq: int,
    ) -> None:
        self._conn.execute(
            insert(dataset_governance).values(
                dataset_version_id=dataset_version_id,
                field=field,
                value=value,
                reason=reason,
                created_at=created_at,
                created_by=created_by,
                ledger_seq=ledger_seq,
            )
        )

    def governance(self, dataset_version_id: int) -> list[GovernanceRecord]:
        rows = self._conn.execute(
            select(
                dataset_governance.c.field,
                dataset_governance.c.value,
                dataset_governance.c.reason,
                dataset_governance.c.created_at,
                dataset_governance.c.created_by,
                dataset_governance.c.ledger_seq,
            )
            .where(dataset_governance.c.dataset_version_id == dataset_version_id)
            .order_by(dataset_governance.c.id)
        )
        return [GovernanceRecord(*row) for row in rows]

    # -- model versions' provenance links ---------------------------------------------------

    def link_provenance(
        self,
        version_id: int,
        attestation_digest: str,
        base_model: str | None,
        signer_key: str,
        dataset_version_ids: list[int],
    ) -> None:
        self._conn.execute(
            insert(version_provenance).values(
                version_id=version_id,
                attestation_digest=attestation_digest,
                base_model=base_model,
                signer_key=signer_key,
            )
        )
        for dataset_version_id in sorted(set(dataset_version_ids)):
            self._conn.execute(
                insert(version_datasets).values(
                    version_id=version_id, dataset_version_id=dataset_version_id
                )
            )

    def version_provenance(self, version_id: int) -> VersionProvenanceRecord | None:
        return self.all_version_provenance([version_id]).get(version_id)

    def all_version_provenance(
        self, version_ids: list[int] | None = None
    ) -> dict[int, VersionProvenanceRecord]:
        query = select(
            version_provenance.c.version_id,
            version_provenance.c.attestation_digest,
            version_provenance.c.base_model,
            version_provenance.c.signer_key,
        )
        links = select(version_datasets.c.version_id, datasets.c.name, dataset_versions.c.number)
        links = links.select_from(
            version_datasets.join(
                dataset_versions, dataset_versions.c.id == version_datasets.c.dataset_version_id
            ).join(datasets, datasets.c.id == dataset_versions.c.dataset_id)
        )
        if version_ids is not None:
            query = query.where(version_provenance.c.version_id.in_(version_ids))
            links = links.where(version_datasets.c.version_id.in_(version_ids))
        used: dict[int, list[str]] = {}
        for version_id, name, number in self._conn.execute(
            links.order_by(datasets.c.name, dataset_versions.c.number)
        ):
            used.setdefault(version_id, []).append(f"datasets:/{name}/{number}")
        return {
            version_id: VersionProvenanceRecord(
                version_id, digest, base_model, signer, tuple(used.get(version_id, ()))
            )
            for version_id, digest, base_model, signer in self._conn.execute(query)
        }
