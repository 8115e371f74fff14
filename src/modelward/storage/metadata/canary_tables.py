"""Tables of post-release judgement on the shared `metadata`: canary definitions and their
signed verdicts, alert webhooks and their delivery attempts.

`canaries`, `canary_verdicts` and `alert_webhooks` decide trust (which release is the baseline,
what was decided, where alerts go and with which key) and are anchored in the ledger; they are
insert-only. `alert_deliveries` is a record of attempts and decides nothing.

Declares tables only; the SQL lives in `canary_repository`.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, ForeignKey, Integer, String, Table, Text

from modelward.storage.metadata.schema import metadata

canaries = Table(
    "canaries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(200), nullable=False, index=True),
    Column("environment", String(100), nullable=False),
    Column("candidate_version", Integer, nullable=False),
    Column("baseline_version", Integer, nullable=False),
    Column("baseline_release_id", String(40), nullable=False),
    Column("plan", Text, nullable=False),  # runtime.canary.CanaryPlan.to_dict(), canonical JSON
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

canary_verdicts = Table(
    "canary_verdicts",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("canary_id", Integer, ForeignKey("canaries.id"), nullable=False, index=True),
    Column("verdict", String(20), nullable=False),
    Column("statement_digest", String(80), nullable=False),
    Column("envelope", Text, nullable=False),  # DSSE envelope JSON over the in-toto statement
    Column("acted", String(200), nullable=True),  # what --act did: the rollback release id
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

alert_webhooks = Table(
    "alert_webhooks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(100), nullable=False, index=True),
    Column("url", String(2000), nullable=False),
    Column("key_id", String(100), nullable=False),
    Column("secret", Text, nullable=False),  # the HMAC key, hex; anchored by its SHA-256 only
    Column("enabled", Boolean, nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", Integer, ForeignKey("alert_webhooks.id"), nullable=False, index=True),
    Column("delivery_id", String(64), nullable=False),
    Column("event", String(100), nullable=False),
    Column("payload_digest", String(80), nullable=False),
    Column("attempt", Integer, nullable=False),
    Column("outcome", String(20), nullable=False),  # delivered, failed, gave_up
    Column("http_status", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("at", String(40), nullable=False),
)
