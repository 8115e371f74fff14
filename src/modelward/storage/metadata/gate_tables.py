"""The release gate's tables on the shared `metadata`: environment policies, approvals, gate
decisions, releases and rollback drills. Every table is insert-only: a new policy, release or
drill is a new row, and the current one is the latest.

Declares tables only; the SQL lives in `gate_repository`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Integer, String, Table, Text

from modelward.storage.metadata.schema import metadata

gate_policies = Table(
    "gate_policies",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("environment", String(100), nullable=False, index=True),
    Column("digest", String(80), nullable=False),
    Column("text", Text, nullable=False),  # the YAML as given
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

gate_approvals = Table(
    "gate_approvals",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False, index=True),
    Column("environment", String(100), nullable=False),
    Column("reviewer", String(200), nullable=False),
    Column("comment", Text, nullable=False, default=""),
    Column("sign_off", Boolean, nullable=False, default=False),
    Column("created_at", String(40), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

gate_decisions = Table(
    "gate_decisions",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False, index=True),
    Column("environment", String(100), nullable=False),
    Column("allowed", Boolean, nullable=False),
    Column("overridden", Boolean, nullable=False),
    Column("policy_digest", String(80), nullable=False),
    Column("facts_digest", String(80), nullable=False),
    Column("decision_digest", String(80), nullable=False),
    Column("envelope", Text, nullable=False),  # DSSE envelope JSON over the SLSA VSA statement
    Column("facts", Text, nullable=False),  # the facts document, canonical JSON
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

gate_releases = Table(
    "gate_releases",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=True),
    Column("release_id", String(40), nullable=False, unique=True),
    Column("model", String(200), nullable=False),
    Column("environment", String(100), nullable=False),
    Column("version_id", Integer, ForeignKey("versions.id"), nullable=False),
    Column("kind", String(20), nullable=False),  # promote, override, rollback
    Column("record", Text, nullable=False),  # core.release.Release.to_dict(), canonical JSON
    Column("state_digest", String(80), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

gate_drills = Table(
    "gate_drills",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("environment", String(100), nullable=False),
    Column("passed", Boolean, nullable=False),
    Column("report", Text, nullable=False),  # core.release.DrillReport.to_dict() JSON
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)
