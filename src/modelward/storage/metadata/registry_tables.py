"""The registry's tables on the shared `metadata`: registry facts, users, models, versions, their
files, attestations and aliases. Versions, files and attestations are insert-only.

Declares tables only; the SQL lives in `registry_repository`.
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

registry_info = Table(
    "registry_info",
    metadata,
    Column("key", String(100), primary_key=True),
    Column("value", Text, nullable=False),
)

users = Table(
    "users",
    metadata,
    Column("name", String(200), primary_key=True),
    Column("role", String(40), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

models = Table(
    "models",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
)

versions = Table(
    "versions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model_id", Integer, ForeignKey("models.id"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("root_digest", String(64), nullable=False, index=True),
    Column("manifest", Text, nullable=False),  # canonical JSON of the Manifest
    Column("description", Text, nullable=False, default=""),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=False),
    UniqueConstraint("model_id", "number", name="uq_versions_model_number"),
    UniqueConstraint("model_id", "root_digest", name="uq_versions_model_root"),
)

version_files = Table(
    "version_files",
    metadata,
    Column("version_id", Integer, ForeignKey("versions.id"), primary_key=True),
    Column("name", String(1000), primary_key=True),
    Column("digest", String(64), nullable=False, index=True),
    Column("size", BigInteger, nullable=False),
)

attestations = Table(
    "attestations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False, index=True),
    Column("kind", String(60), nullable=False),
    Column("document", Text, nullable=False),  # JSON: a Sigstore bundle or a DSSE envelope
    Column("digest", String(64), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

aliases = Table(
    "aliases",
    metadata,
    Column("model_id", Integer, ForeignKey("models.id"), primary_key=True),
    Column("alias", String(200), primary_key=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("updated_at", String(40), nullable=False),
    Column("updated_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

registry_settings = Table(
    "registry_settings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("key", String(200), nullable=False, index=True),
    Column("value", Text, nullable=False),  # canonical JSON
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)
