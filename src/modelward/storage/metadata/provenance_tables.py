"""Provenance tables on the shared `metadata`: datasets, their immutable versions (manifest JSON)
and files, governance records that change a version's consent or retention without editing it,
and the links from model versions to the datasets and base model their provenance names.

Every table here is insert-only. Declares tables only; the SQL lives in `provenance_repository`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelward.storage.metadata.schema import metadata

datasets = Table(
    "datasets",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
)

dataset_versions = Table(
    "dataset_versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("dataset_id", Integer, ForeignKey("datasets.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("manifest", Text, nullable=False),  # canonical JSON of the DatasetManifest
    Column("manifest_digest", String(64), nullable=False, index=True),
    Column("data_digest", String(64), nullable=False),
    Column("labeling_qa_digest", String(64), nullable=True),  # blob of the QA report
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    UniqueConstraint("dataset_id", "number", name="uq_dataset_versions_dataset_number"),
)

dataset_files = Table(
    "dataset_files",
    metadata,
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), primary_key=True),
    Column("path", String(1000), primary_key=True),
    Column("digest", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
    Column("record_format", String(20), nullable=True),
    Column("record_count", BigInteger, nullable=True),
)

dataset_governance = Table(
    "dataset_governance",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column(
        "dataset_version_id", Integer, ForeignKey("dataset_versions.id"), nullable=False, index=True
    ),
    Column("field", String(40), nullable=False),  # "consent" or "retention_until"
    Column("value", Text, nullable=True),
    Column("reason", Text, nullable=False, default=""),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
)

version_provenance = Table(
    "version_provenance",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("attestation_digest", String(64), nullable=False),
    Column("base_model", Text, nullable=True),  # models:/NAME/N or sha256:<root digest>
    Column("signer_key", String(200), nullable=False),
)

version_datasets = Table(
    "version_datasets",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("dataset_version_id", Integer, ForeignKey("dataset_versions.id"), primary_key=True),
)
