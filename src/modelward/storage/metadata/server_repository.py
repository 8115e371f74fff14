"""The SQL of two pieces of server state every process shares: upload claims (which user sent
which blob's bytes, and which models a stored blob is a file of) and failed authentications per
client address and minute.

Works inside the caller's transaction; decides nothing and does not commit.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.engine import Connection

from modelward.storage.metadata.auth_tables import auth_failures, upload_claims
from modelward.storage.metadata.registry_tables import models, version_files, versions


def _insert(conn: Connection, table: Any) -> Any:
    """The dialect's INSERT, which has ON CONFLICT (PostgreSQL and SQLite, the two supported)."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)


class UploadClaims:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def record(self, digest: str, user: str, at: str) -> None:
        statement = _insert(self.conn, upload_claims).values(
            digest=digest, user_name=user, created_at=at
        )
        self.conn.execute(statement.on_conflict_do_nothing(index_elements=["digest", "user_name"]))

    def claimed(self, user: str, digests: list[str]) -> set[str]:
        """Those of `digests` whose bytes `user` has sent."""
        found: set[str] = set()
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = self.conn.execute(
                select(upload_claims.c.digest).where(
                    upload_claims.c.user_name == user, upload_claims.c.digest.in_(chunk)
                )
            )
            found.update(str(r[0]) for r in rows)
        return found

    def models_holding(self, digests: list[str]) -> dict[str, set[str]]:
        """For each of `digests` that is a file of some version: the names of those models."""
        holding: dict[str, set[str]] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = self.conn.execute(
                select(version_files.c.digest, models.c.name)
                .join(versions, versions.c.id == version_files.c.version_id)
                .join(models, models.c.id == versions.c.model_id)
                .where(version_files.c.digest.in_(chunk))
                .distinct()
            )
            for digest, model in rows:
                holding.setdefault(str(digest), set()).add(str(model))
        return holding


class AuthFailures:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def add(self, client: str, minute: int) -> None:
        statement = _insert(self.conn, auth_failures).values(
            client=client, minute=minute, failures=1
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["client", "minute"],
                set_={"failures": auth_failures.c.failures + 1},
            )
        )

    def counts(self, client: str, since_minute: int) -> dict[int, int]:
        rows = self.conn.execute(
            select(auth_failures.c.minute, auth_failures.c.failures).where(
                auth_failures.c.client == client, auth_failures.c.minute >= since_minute
            )
        )
        return {int(minute): int(failures) for minute, failures in rows}

    def forget_before(self, minute: int) -> int:
        result = self.conn.execute(delete(auth_failures).where(auth_failures.c.minute < minute))
        return int(result.rowcount or 0)
