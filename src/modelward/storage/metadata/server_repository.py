"""The SQL of two pieces of server state every process shares: upload claims (which user sent
which blob's bytes, and which models a stored blob is a file of) and failed authentications per
client address and minute.

Works inside the caller's transaction; decides nothing and does not commit.
"""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass(frozen=True)
class UploadClaim:
    digest: str
    user: str
    scope: str
    mac: str


class UploadClaims:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def record(self, claim: UploadClaim, at: str) -> None:
        statement = _insert(self.conn, upload_claims).values(
            digest=claim.digest,
            user_name=claim.user,
            scope=claim.scope,
            created_at=at,
            mac=claim.mac,
        )
        self.conn.execute(
            statement.on_conflict_do_update(
                index_elements=["digest", "user_name", "scope"], set_={"mac": claim.mac}
            )
        )

    def of_user(self, user: str, digests: list[str]) -> list[UploadClaim]:
        """The claims `user` holds (under any scope) on any of `digests`."""
        found: list[UploadClaim] = []
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = self.conn.execute(
                select(
                    upload_claims.c.digest,
                    upload_claims.c.user_name,
                    upload_claims.c.scope,
                    upload_claims.c.mac,
                ).where(upload_claims.c.user_name == user, upload_claims.c.digest.in_(chunk))
            )
            found.extend(UploadClaim(str(d), str(u), str(s), str(m)) for d, u, s, m in rows)
        return found

    def versions_holding(
        self, digests: list[str], per_digest: int
    ) -> dict[str, list[tuple[str, int]]]:
        """For each of `digests` listed as a file of some version: up to `per_digest` of those
        versions, as (model name, version number), newest first. (The rows say so; the caller
        checks each version against its ledger event before believing it.)"""
        holding: dict[str, list[tuple[str, int]]] = {}
        for start in range(0, len(digests), 500):
            chunk = digests[start : start + 500]
            rows = self.conn.execute(
                select(version_files.c.digest, models.c.name, versions.c.number)
                .join(versions, versions.c.id == version_files.c.version_id)
                .join(models, models.c.id == versions.c.model_id)
                .where(version_files.c.digest.in_(chunk))
                .order_by(versions.c.id.desc())
            )
            for digest, model, number in rows:
                found = holding.setdefault(str(digest), [])
                if len(found) < per_digest:
                    found.append((str(model), int(number)))
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
