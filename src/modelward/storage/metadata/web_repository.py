"""All of the web console's SQL: sessions (insert, find, revoke, purge) and OIDC sign-ins in
progress (insert, take once).

Works inside the caller's transaction; does not hash, verify or commit.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, insert, select
from sqlalchemy.engine import Connection

from modelward.storage.metadata.web_tables import web_logins, web_sessions


@dataclass(frozen=True)
class SessionRow:
    id_sha256: str
    user: str
    principal_json: str
    csrf_token: str
    created_at: str
    expires_at: str
    revoked_at: str | None
    mac: str = ""


@dataclass(frozen=True)
class LoginRow:
    nonce: str
    code_verifier: str
    expires_at: str


class WebRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add_session(self, row: SessionRow) -> None:
        self._conn.execute(
            insert(web_sessions).values(
                id_sha256=row.id_sha256,
                user_name=row.user,
                principal=row.principal_json,
                csrf_token=row.csrf_token,
                created_at=row.created_at,
                expires_at=row.expires_at,
                revoked_at=row.revoked_at,
                mac=row.mac,
            )
        )

    def session(self, id_sha256: str) -> SessionRow | None:
        c = web_sessions.c
        found = self._conn.execute(
            select(
                c.id_sha256,
                c.user_name,
                c.principal,
                c.csrf_token,
                c.created_at,
                c.expires_at,
                c.revoked_at,
                c.mac,
            ).where(c.id_sha256 == id_sha256)
        ).first()
        return None if found is None else SessionRow(*found)

    def revoke_session(self, id_sha256: str, at: str) -> None:
        """End a session for good: the row is deleted, so nothing in the database (a
        `revoked_at` set back to NULL, say) can bring the cookie back to life."""
        self._conn.execute(delete(web_sessions).where(web_sessions.c.id_sha256 == id_sha256))

    def purge(self, now: str) -> None:
        """Forget expired sessions and sign-ins (an expired row authenticates nobody anyway)."""
        self._conn.execute(delete(web_sessions).where(web_sessions.c.expires_at <= now))
        self._conn.execute(delete(web_logins).where(web_logins.c.expires_at <= now))

    def add_login(
        self, state_sha256: str, nonce: str, code_verifier: str, at: str, expires_at: str
    ) -> None:
        self._conn.execute(
            insert(web_logins).values(
                state_sha256=state_sha256,
                nonce=nonce,
                code_verifier=code_verifier,
                created_at=at,
                expires_at=expires_at,
            )
        )

    def take_login(self, state_sha256: str) -> LoginRow | None:
        """The sign-in started with this state, removed so that it can be finished only once."""
        c = web_logins.c
        found = self._conn.execute(
            select(c.nonce, c.code_verifier, c.expires_at).where(c.state_sha256 == state_sha256)
        ).first()
        if found is None:
            return None
        self._conn.execute(delete(web_logins).where(c.state_sha256 == state_sha256))
        return LoginRow(*found)
