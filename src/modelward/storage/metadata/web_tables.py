"""The web console's tables on the shared `metadata`: signed-in sessions and sign-ins in
progress (OIDC authorization code with PKCE). Both are keyed by the SHA-256 of a random secret
that only the browser holds (in a cookie), so a copy of the table signs nobody in.

Declares tables only; the SQL lives in `web_repository`.
"""

from __future__ import annotations

from sqlalchemy import Column, String, Table, Text

from modelward.storage.metadata.schema import metadata

web_sessions = Table(
    "web_sessions",
    metadata,
    Column("id_sha256", String(64), primary_key=True),  # hex SHA-256 of the cookie's 32 bytes
    Column("user_name", String(200), nullable=False, index=True),
    Column("principal", Text, nullable=False),  # JSON: issuer, subject, token id, scopes, pattern
    Column("csrf_token", String(100), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False, index=True),
    Column("revoked_at", String(40), nullable=True),
    # HMAC-SHA256 over the row under a key only the servers hold (derived from the ledger key):
    # a row written by someone with database access alone signs nobody in
    Column("mac", String(64), nullable=False),
)

web_logins = Table(
    "web_logins",
    metadata,
    Column("state_sha256", String(64), primary_key=True),  # hex SHA-256 of the `state` value
    Column("nonce", String(100), nullable=False),
    Column("code_verifier", String(200), nullable=False),
    Column("created_at", String(40), nullable=False),
    Column("expires_at", String(40), nullable=False, index=True),
)
