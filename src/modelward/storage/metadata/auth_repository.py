"""All of the server authentication's SQL: API tokens, OIDC issuers and claim mappings.

Works inside the caller's transaction; does not hash, verify or commit.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.engine import Connection

from modelward.errors import ConflictError, NotFoundError
from modelward.storage.metadata.auth_tables import api_tokens, oidc_issuers, oidc_mappings


@dataclass(frozen=True)
class TokenRecord:
    id: str
    user: str
    secret_sha256: str
    scopes: tuple[str, ...]
    model_pattern: str | None
    created_at: str
    created_by: str
    expires_at: str | None
    revoked_at: str | None
    last_used_at: str | None

    def to_dict(self) -> dict[str, Any]:
        """Everything but the secret's hash."""
        return {
            "id": self.id,
            "user": self.user,
            "scopes": list(self.scopes),
            "model_pattern": self.model_pattern,
            "created_at": self.created_at,
            "created_by": self.created_by,
            "expires_at": self.expires_at,
            "revoked_at": self.revoked_at,
            "last_used_at": self.last_used_at,
        }


@dataclass(frozen=True)
class IssuerRecord:
    issuer: str
    audience: str
    jwks_url: str | None
    jwks: str | None
    algorithms: tuple[str, ...]
    created_at: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "audience": self.audience,
            "jwks_url": self.jwks_url,
            "jwks_file": self.jwks is not None,
            "algorithms": list(self.algorithms),
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


@dataclass(frozen=True)
class MappingRecord:
    id: int
    issuer: str
    claims: dict[str, str]
    user: str
    created_at: str
    created_by: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "issuer": self.issuer,
            "claims": dict(self.claims),
            "user": self.user,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }


def _token(row: Any) -> TokenRecord:
    return TokenRecord(
        str(row.id),
        str(row.user_name),
        str(row.secret_sha256),
        tuple(json.loads(row.scopes)),
        row.model_pattern,
        str(row.created_at),
        str(row.created_by),
        row.expires_at,
        row.revoked_at,
        row.last_used_at,
    )


class AuthRepository:
    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    # -- tokens -----------------------------------------------------------------------------

    def add_token(self, record: TokenRecord, ledger_seq: int | None) -> None:
        self.conn.execute(
            insert(api_tokens).values(
                id=record.id,
                user_name=record.user,
                secret_sha256=record.secret_sha256,
                scopes=json.dumps(list(record.scopes)),
                model_pattern=record.model_pattern,
                created_at=record.created_at,
                created_by=record.created_by,
                expires_at=record.expires_at,
                ledger_seq=ledger_seq,
            )
        )

    def token(self, token_id: str) -> TokenRecord | None:
        row = self.conn.execute(select(api_tokens).where(api_tokens.c.id == token_id)).first()
        return _token(row) if row is not None else None

    def tokens(self, user: str | None = None) -> list[TokenRecord]:
        query = select(api_tokens).order_by(api_tokens.c.created_at, api_tokens.c.id)
        if user is not None:
            query = query.where(api_tokens.c.user_name == user)
        return [_token(row) for row in self.conn.execute(query)]

    def revoke(self, token_id: str, at: str) -> None:
        done = self.conn.execute(
            update(api_tokens)
            .where(api_tokens.c.id == token_id, api_tokens.c.revoked_at.is_(None))
            .values(revoked_at=at)
        )
        if done.rowcount != 1:
            raise NotFoundError(f"no active token {token_id!r}")

    def touch(self, token_id: str, at: str) -> None:
        self.conn.execute(
            update(api_tokens).where(api_tokens.c.id == token_id).values(last_used_at=at)
        )

    # -- OIDC -------------------------------------------------------------------------------

    def add_issuer(self, record: IssuerRecord, ledger_seq: int | None) -> None:
        if self.issuer(record.issuer) is not None:
            raise ConflictError(f"issuer {record.issuer!r} is already configured")
        self.conn.execute(
            insert(oidc_issuers).values(
                issuer=record.issuer,
                audience=record.audience,
                jwks_url=record.jwks_url,
                jwks=record.jwks,
                algorithms=",".join(record.algorithms),
                created_at=record.created_at,
                created_by=record.created_by,
                ledger_seq=ledger_seq,
            )
        )

    def issuer(self, issuer: str) -> IssuerRecord | None:
        row = self.conn.execute(select(oidc_issuers).where(oidc_issuers.c.issuer == issuer)).first()
        if row is None:
            return None
        return IssuerRecord(
            str(row.issuer),
            str(row.audience),
            row.jwks_url,
            row.jwks,
            tuple(a for a in str(row.algorithms).split(",") if a),
            str(row.created_at),
            str(row.created_by),
        )

    def issuers(self) -> list[IssuerRecord]:
        names = self.conn.execute(select(oidc_issuers.c.issuer).order_by(oidc_issuers.c.id))
        found = [self.issuer(str(name)) for (name,) in names]
        return [record for record in found if record is not None]

    def add_mapping(
        self, issuer: str, claims_json: str, user: str, at: str, by: str, ledger_seq: int | None
    ) -> int:
        result = self.conn.execute(
            insert(oidc_mappings).values(
                issuer=issuer,
                claims=claims_json,
                user_name=user,
                created_at=at,
                created_by=by,
                ledger_seq=ledger_seq,
            )
        )
        key = result.inserted_primary_key
        return int(key[0]) if key else 0

    def mappings(self, issuer: str | None = None) -> list[MappingRecord]:
        query = select(oidc_mappings).order_by(oidc_mappings.c.id)
        if issuer is not None:
            query = query.where(oidc_mappings.c.issuer == issuer)
        return [
            MappingRecord(
                int(row.id),
                str(row.issuer),
                dict(json.loads(row.claims)),
                str(row.user_name),
                str(row.created_at),
                str(row.created_by),
            )
            for row in self.conn.execute(query)
        ]
