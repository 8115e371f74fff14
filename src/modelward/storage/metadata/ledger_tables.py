"""The ledger's tables on the shared `metadata`: events, stored Merkle nodes, issued checkpoints.

- `ledger_events`: one row per event, `seq` from 0 with no gaps; `details` is the canonical JSON
  (RFC 8785) text of the event's details and `details_digest` its `sha256:` digest; `leaf_hash` is
  the RFC 9162 leaf hash of the event's canonical leaf (which covers the digest, not the details).
- `ledger_nodes`: every complete Merkle subtree above the leaves, keyed by (level, idx); level 0
  (the leaves) lives in `ledger_events.leaf_hash`.
- `ledger_checkpoints`: the signed checkpoints the registry issued, as signed-note text.

All three are insert-only; the repository never updates or deletes. Declares tables only.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Table,
    Text,
)

from modelward.storage.metadata.schema import metadata

# INTEGER on SQLite makes the sequence the rowid (fast ordered scans); BIGINT elsewhere.
_Sequence = BigInteger().with_variant(Integer(), "sqlite")

ledger_events = Table(
    "ledger_events",
    metadata,
    Column("seq", _Sequence, primary_key=True, autoincrement=False),
    Column("recorded_at", String(40), nullable=False),
    Column("actor", Text, nullable=False),
    Column("action", String(200), nullable=False),
    Column("subject", Text, nullable=False, index=True),
    Column("details", Text, nullable=False),
    Column("details_digest", String(80), nullable=False),
    Column("leaf_hash", LargeBinary(32), nullable=False),
    # HMAC-SHA256 of the leaf hash under a key derived from the ledger key (see services)
    Column("seal", LargeBinary(32), nullable=True),
)

ledger_nodes = Table(
    "ledger_nodes",
    metadata,
    Column("level", SmallInteger, primary_key=True, autoincrement=False),
    Column("idx", BigInteger, primary_key=True, autoincrement=False),
    Column("hash", LargeBinary(32), nullable=False),
    sqlite_with_rowid=False,
)

ledger_checkpoints = Table(
    "ledger_checkpoints",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("size", BigInteger, nullable=False, index=True),
    Column("root_hash", LargeBinary(32), nullable=False),
    Column("note", Text, nullable=False),
    Column("created_at", String(40), nullable=False),
)
