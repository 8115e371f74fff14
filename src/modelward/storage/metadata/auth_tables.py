"""The server's tables on the shared `metadata`: API tokens (hashed), OIDC issuers, the claim
mappings that turn a CI job's JWT into a registry user, the jobs queue, the uploads each user
proved they hold (by sending their bytes), and failed authentications per client address and
minute (one limit shared by every server process).

Declares tables only; the SQL lives in `auth_repository` (and `jobs_repository`).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Integer, String, Table, Text, UniqueConstraint

from modelward.storage.metadata.schema import metadata

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", String(40), primary_key=True),  # public part of the token, `mwt_<id>_<secret>`
    Column("user_name", String(200), nullable=False, index=True),
    Column("secret_sha256", String(64), nullable=False),  # hex SHA-256 of the secret
    Column("scopes", Text, nullable=False),  # JSON list of actions; [] = whatever the role allows
    Column("model_pattern", String(200), nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("expires_at", String(40), nullable=True),
    Column("revoked_at", String(40), nullable=True),
    Column("last_used_at", String(40), nullable=True),
    Column("ledger_seq", BigInteger, nullable=True),
)

oidc_issuers = Table(
    "oidc_issuers",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(500), nullable=False, unique=True),
    Column("audience", String(500), nullable=False),
    Column("jwks_url", String(1000), nullable=True),
    Column("jwks", Text, nullable=True),  # a JWKS given as a file, for offline use
    Column("algorithms", String(200), nullable=False),  # comma-separated
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

oidc_mappings = Table(
    "oidc_mappings",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("issuer", String(500), nullable=False, index=True),
    Column("claims", Text, nullable=False),  # canonical JSON object: claim -> required value
    Column("user_name", String(200), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("ledger_seq", BigInteger, nullable=True),
)

jobs = Table(
    "jobs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("kind", String(100), nullable=False, index=True),
    Column("payload", Text, nullable=False),
    Column("state", String(20), nullable=False, index=True),  # queued, running, done, failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", String(40), nullable=True),
    Column("claimed_by", String(200), nullable=True),
    Column("result", Text, nullable=True),
    Column("created_at", String(40), nullable=False),
    Column("created_by", String(200), nullable=False),
    Column("finished_at", String(40), nullable=True),
    # a job queued at most once whoever queues it (a watched canary's slot); NULL: no key
    Column("dedupe_key", String(200), nullable=True),
    UniqueConstraint("dedupe_key", name="uq_jobs_dedupe_key"),
)

# A user may name a stored blob in a push only after sending its bytes (or when it is already a
# file of a version they may view): a digest alone proves nothing of what one holds.
upload_claims = Table(
    "upload_claims",
    metadata,
    Column("digest", String(64), primary_key=True),
    Column("user_name", String(200), primary_key=True),
    Column("scope", String(200), primary_key=True),  # the token's model pattern; "" for none
    Column("created_at", String(40), nullable=False),
    Column("mac", String(64), nullable=False),  # services.row_seals over (digest, user, scope)
)

auth_failures = Table(
    "auth_failures",
    metadata,
    Column("client", String(100), primary_key=True),
    Column("minute", BigInteger, primary_key=True),  # whole minutes since the Unix epoch
    Column("failures", Integer, nullable=False),
)
