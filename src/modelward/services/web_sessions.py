"""The web console's sessions and OIDC sign-ins, kept in the database so that any number of
server processes serve one signed-in browser.

A session id is 32 random bytes, given to the browser once (in a cookie) and stored only as its
SHA-256. A session stands for the principal that signed in (an OIDC id_token verified by
`services.oidc`, or an API token verified by `services.tokens`); it expires, sign-out revokes
it, and a session opened with an API token ends when that token is revoked or expires. The
user's role is never stored here: every request reads it from the registry (`access.authorise`).

Each session row carries an HMAC under a key derived from the ledger's private key (which only
the servers hold), so a row inserted or edited with database access alone signs nobody in.

A sign-in in progress keeps the OIDC `nonce` and the PKCE `code_verifier` under the SHA-256 of
its `state`, for ten minutes, and can be finished once. Knows nothing of HTTP or cookies.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from modelward.core.principal import Principal
from modelward.services.context import RegistryContext
from modelward.services.tokens import TOKEN_ISSUER
from modelward.storage.metadata.auth_repository import AuthRepository
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository
from modelward.storage.metadata.web_repository import LoginRow, SessionRow, WebRepository

SESSION_LIFETIME = timedelta(hours=8)
LOGIN_LIFETIME = timedelta(minutes=10)
_SECRET_BYTES = 32


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _digest_of(secret: str) -> str | None:
    """SHA-256 (hex) of the bytes a presented secret encodes; None when malformed."""
    if not 40 <= len(secret) <= 64:
        return None
    try:
        raw = base64.urlsafe_b64decode(secret + "=" * (-len(secret) % 4))
    except (ValueError, TypeError):
        return None
    if len(raw) != _SECRET_BYTES or _b64(raw) != secret:
        return None
    return hashlib.sha256(raw).hexdigest()


@dataclass(frozen=True)
class NewSession:
    secret: str  # the cookie's value, never stored
    csrf_token: str
    expires_at: datetime


@dataclass(frozen=True)
class WebSession:
    principal: Principal
    csrf_token: str
    expires_at: str


@dataclass(frozen=True)
class LoginStart:
    state: str
    nonce: str
    code_verifier: str

    @property
    def code_challenge(self) -> str:
        """PKCE S256: BASE64URL(SHA-256(ASCII(code_verifier)))."""
        return _b64(hashlib.sha256(self.code_verifier.encode("ascii")).digest())


def _principal_json(principal: Principal) -> str:
    return json.dumps({**principal.to_dict(), "claims": principal.claims}, sort_keys=True)


def _principal_from(row: SessionRow) -> Principal:
    data = json.loads(row.principal_json)
    return Principal(
        name=row.user,
        issuer=str(data["issuer"]),
        token_id=data.get("token_id"),
        scopes=tuple(data.get("scopes") or ()),
        model_pattern=data.get("model_pattern"),
        subject=str(data.get("subject") or row.user),
        claims=dict(data.get("claims") or {}),
    )


def _mac_key(context: RegistryContext) -> bytes:
    from cryptography.hazmat.primitives import serialization

    raw = context.ledger_key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return hashlib.sha256(b"modelward web session v1\x00" + raw).digest()


def _row_mac(key: bytes, row: SessionRow) -> str:
    fields = [row.id_sha256, row.user, row.principal_json, row.csrf_token, row.expires_at]
    return hmac.new(key, json.dumps(fields).encode("utf-8"), hashlib.sha256).hexdigest()


class WebSessionService:
    def __init__(self, context: RegistryContext) -> None:
        self.ctx = context
        self._key = _mac_key(context)

    def start(
        self, principal: Principal, now: datetime, lifetime: timedelta = SESSION_LIFETIME
    ) -> NewSession:
        """A new session for an authenticated principal (the caller verified its credential)."""
        secret = _b64(secrets.token_bytes(_SECRET_BYTES))
        csrf = _b64(secrets.token_bytes(_SECRET_BYTES))
        expires = now + lifetime
        digest = _digest_of(secret)
        assert digest is not None
        row = SessionRow(
            digest,
            principal.name,
            _principal_json(principal),
            csrf,
            format_time(now),
            format_time(expires),
            None,
        )
        row = dataclasses.replace(row, mac=_row_mac(self._key, row))
        with self.ctx.database.transaction() as conn:
            repo = WebRepository(conn)
            repo.purge(format_time(now))
            repo.add_session(row)
        return NewSession(secret, csrf, expires)

    def find(self, secret: str, now: datetime) -> WebSession | None:
        """The live session a cookie names; None when unknown, expired, revoked, or when its
        user or API token is gone (fail closed: the browser is sent to sign in again)."""
        digest = _digest_of(secret)
        if digest is None:
            return None
        stamp = format_time(now)
        with self.ctx.database.read() as conn:
            row = WebRepository(conn).session(digest)
            if row is None or row.revoked_at is not None or row.expires_at <= stamp:
                return None
            if not hmac.compare_digest(row.mac, _row_mac(self._key, row)):
                return None  # written or edited by someone without the servers' key
            if RegistryRepository(conn).user_role(row.user) is None:
                return None
            principal = _principal_from(row)
            if principal.issuer == TOKEN_ISSUER:
                token = AuthRepository(conn).token(str(principal.token_id))
                if token is None or token.user != row.user or token.revoked_at is not None:
                    return None
                if token.expires_at is not None and token.expires_at <= stamp:
                    return None
        return WebSession(principal, row.csrf_token, row.expires_at)

    def end(self, secret: str, now: datetime) -> None:
        digest = _digest_of(secret)
        if digest is None:
            return
        with self.ctx.database.transaction() as conn:
            WebRepository(conn).revoke_session(digest, format_time(now))

    # -- OIDC sign-in in progress -----------------------------------------------------------

    def begin_login(self, now: datetime) -> LoginStart:
        start = LoginStart(
            state=_b64(secrets.token_bytes(_SECRET_BYTES)),
            nonce=_b64(secrets.token_bytes(_SECRET_BYTES)),
            code_verifier=_b64(secrets.token_bytes(_SECRET_BYTES)),  # 43 characters
        )
        digest = _digest_of(start.state)
        assert digest is not None
        with self.ctx.database.transaction() as conn:
            repo = WebRepository(conn)
            repo.purge(format_time(now))
            repo.add_login(
                digest,
                start.nonce,
                start.code_verifier,
                format_time(now),
                format_time(now + LOGIN_LIFETIME),
            )
        return start

    def take_login(self, state: str, now: datetime) -> LoginRow | None:
        """The sign-in begun with `state`, once; None when unknown, used or expired."""
        digest = _digest_of(state)
        if digest is None:
            return None
        with self.ctx.database.transaction() as conn:
            row = WebRepository(conn).take_login(digest)
        if row is None or row.expires_at <= format_time(now):
            return None
        return row
