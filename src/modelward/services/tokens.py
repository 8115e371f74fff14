"""API tokens: create (printed once), list, revoke, and authenticate a presented token.

A token is `mwt_<id>_<secret>`; the registry keeps the id and the SHA-256 of the secret only, and
compares in constant time. Tokens expire, can be revoked one by one or all of a user's at once,
and record when they were last used. Creating and revoking are admin actions, ledgered (the
event names the token id, never the secret). Knows nothing of HTTP.
"""

from __future__ import annotations

import builtins
import hashlib
import hmac
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from modelward.core.names import validate_name
from modelward.core.principal import Principal
from modelward.core.roles import Action, parse_action
from modelward.errors import InputError, NotFoundError, PermissionDeniedError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import load_gate_config
from modelward.services.state_integrity import anchored_append, trusted_role, verify_current
from modelward.services.users import require
from modelward.storage.metadata.auth_repository import AuthRepository, TokenRecord
from modelward.storage.metadata.ledger_repository import format_time

TOKEN_PREFIX = "mwt_"
TOKEN_ISSUER = "modelward"
# Writing last-use on every request would serialise readers behind writers; a minute is enough.
_LAST_USE_RESOLUTION = timedelta(seconds=60)
_DUMMY_HASH = hashlib.sha256(b"modelward-no-such-token").hexdigest()


TOKENS_TABLE = "api_tokens"


def token_subject(token_id: str) -> str:
    """The ledger subject of a token's events (its creation and revocation)."""
    return f"token:{token_id}"


def _log_refusal(token_id: str, problem: str) -> None:
    import logging

    logging.getLogger("modelward.auth").warning(
        "token refused", extra={"token_id": token_id, "problem": problem}
    )


class AuthenticationError(PermissionDeniedError):
    """A presented credential is missing, malformed, unknown, expired or revoked."""


@dataclass(frozen=True)
class CreatedToken:
    token: str  # shown once
    record: TokenRecord

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "token": self.token}


def secret_digest(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def split_token(text: str) -> tuple[str, str]:
    """(id, secret) of a well-formed token; AuthenticationError otherwise."""
    if not text.startswith(TOKEN_PREFIX) or len(text) > 200:
        raise AuthenticationError("not a modelward API token")
    token_id, sep, secret = text[len(TOKEN_PREFIX) :].partition("_")
    if not sep or not token_id or not secret or not token_id.isalnum():
        raise AuthenticationError("not a modelward API token")
    return token_id, secret


class TokenService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def _require_admin(self, conn: Any) -> None:
        require(conn, self.actor, Action.ADD_USER, load_gate_config(self.ctx).permissions)

    def create(
        self,
        user: str,
        scopes: Sequence[str] = (),
        model_pattern: str | None = None,
        expires_in: timedelta | None = None,
    ) -> CreatedToken:
        validate_name(user, "user name")
        actions = tuple(sorted({parse_action(s).value for s in scopes}))
        if model_pattern is not None and (
            not model_pattern.strip() or len(model_pattern) > 200 or "/" in model_pattern
        ):
            raise InputError("--model must be a model name or a pattern such as 'team-*'")
        now = utc_now()
        token_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        record = TokenRecord(
            token_id,
            user,
            secret_digest(secret),
            actions,
            model_pattern,
            format_time(now),
            self.actor,
            format_time(now + expires_in) if expires_in is not None else None,
            None,
            None,
        )
        with self.ctx.database.transaction() as conn:
            self._require_admin(conn)
            role, problem = trusted_role(conn, user)
            if problem is not None:
                raise PermissionDeniedError(f"{user!r}: {problem}; no token is made for them")
            if role is None:
                raise NotFoundError(
                    f"{user!r} is not a user of this registry; add them first with "
                    f"`modelward users add {user} --role ROLE`"
                )
            AuthRepository(conn).add_token(record, None)
            anchored_append(
                conn,
                self.actor,
                "token.create",
                token_subject(token_id),
                {
                    "token_id": token_id,
                    "user": user,
                    "scopes": list(actions),
                    "model_pattern": model_pattern,
                    "expires_at": record.expires_at,
                },
                now,
                rows=[(TOKENS_TABLE, token_id)],
            )
        return CreatedToken(f"{TOKEN_PREFIX}{token_id}_{secret}", record)

    def list(self, user: str | None = None) -> builtins.list[TokenRecord]:
        with self.ctx.database.read() as conn:
            self._require_admin(conn)
            return AuthRepository(conn).tokens(user)

    def revoke(self, token_id: str) -> builtins.list[str]:
        return self._revoke([token_id], None)

    def revoke_all(self, user: str) -> builtins.list[str]:
        validate_name(user, "user name")
        with self.ctx.database.read() as conn:
            ids = [t.id for t in AuthRepository(conn).tokens(user) if t.revoked_at is None]
        return self._revoke(ids, user)

    def _revoke(self, ids: builtins.list[str], user: str | None) -> builtins.list[str]:
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            self._require_admin(conn)
            repo = AuthRepository(conn)
            for token_id in ids:
                found = repo.token(token_id)
                if found is None or found.revoked_at is not None:
                    raise NotFoundError(f"no active token {token_id!r}")
                repo.revoke(token_id, format_time(now))
                anchored_append(
                    conn,
                    self.actor,
                    "token.revoke",
                    token_subject(token_id),
                    {"token_id": token_id, "user": found.user},
                    now,
                    rows=[(TOKENS_TABLE, token_id)],
                )
        return ids


def token_problem(
    context: RegistryContext, token_id: str, now: datetime | None = None
) -> str | None:
    """Why the token `token_id` no longer stands for its user (for work queued with it that
    runs later), or None: the same checks as authentication, but for the secret."""
    now = now or utc_now()
    with context.database.read() as conn:
        record = AuthRepository(conn).token(token_id)
        if record is None:
            return f"{token_id} no longer exists"
        problem = verify_current(conn, TOKENS_TABLE, token_id, token_subject(token_id))
        if problem is not None:
            return f"is not trusted ({problem})"
        role, role_problem = trusted_role(conn, record.user)
    if role_problem is not None:
        return f"is not trusted ({role_problem})"
    if record.revoked_at is not None:
        return f"was revoked at {record.revoked_at}"
    if record.expires_at is not None and record.expires_at <= format_time(now):
        return f"expired at {record.expires_at}"
    if role is None:
        return f"belongs to {record.user!r}, who no longer exists"
    return None


def authenticate_token(context: RegistryContext, text: str, now: datetime) -> Principal:
    """The principal a presented API token stands for; AuthenticationError otherwise."""
    token_id, secret = split_token(text)
    presented = secret_digest(secret)
    with context.database.read() as conn:
        record = AuthRepository(conn).token(token_id)
        # Compare even when the id is unknown, so a miss takes as long as a wrong secret.
        matches = hmac.compare_digest(presented, record.secret_sha256 if record else _DUMMY_HASH)
        if record is None or not matches:
            raise AuthenticationError("unknown token or wrong secret")
        # The row decides who the bearer is: it must be the one the ledger recorded last
        # (an inserted, edited or un-revoked row is refused, and so is its user's forged row).
        problem = verify_current(conn, TOKENS_TABLE, token_id, token_subject(token_id))
        if problem is not None:
            _log_refusal(token_id, problem)
            raise AuthenticationError(f"{problem}; it is not trusted")
        role, role_problem = trusted_role(conn, record.user)
        if role_problem is not None:
            raise AuthenticationError(f"token {token_id}: {role_problem}")
    if record.revoked_at is not None:
        raise AuthenticationError(f"token {token_id} was revoked at {record.revoked_at}")
    if record.expires_at is not None and record.expires_at <= format_time(now):
        raise AuthenticationError(f"token {token_id} expired at {record.expires_at}")
    if role is None:
        raise AuthenticationError(f"token {token_id}: its user {record.user!r} no longer exists")
    last = record.last_used_at
    if last is None or last <= format_time(now - _LAST_USE_RESOLUTION):
        with context.database.transaction() as conn:
            AuthRepository(conn).touch(token_id, format_time(now))
    return Principal(
        name=record.user,
        issuer=TOKEN_ISSUER,
        token_id=token_id,
        scopes=record.scopes,
        model_pattern=record.model_pattern,
        subject=record.user,
    )
