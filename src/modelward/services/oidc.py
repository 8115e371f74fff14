"""OIDC bearer JWTs: admin-configured issuers (JWKS from a URL or a file), claim mappings that
turn a CI job's identity into a registry user (as trusted publishing does), and verification.

A JWT is accepted only when: its issuer is configured; its header `alg` is one the issuer allows
(never `none`, never an HMAC algorithm: the JWKS holds public keys); its `kid` names a key in the
issuer's JWKS whose type fits the algorithm; the signature verifies (PyJWT); `iss`, `aud`, `exp`,
`nbf` and `iat` check out; and one of the issuer's claim mappings matches all its claims. The
JWKS is fetched through an injected function and cached for a few minutes.
"""

from __future__ import annotations

import builtins
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelward.core.canonical import canonical_json
from modelward.core.names import validate_name
from modelward.core.principal import Principal
from modelward.core.roles import Action
from modelward.errors import DependencyError, InputError, NotFoundError, VerificationError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import load_gate_config
from modelward.services.state_integrity import (
    anchored_append,
    trusted_role,
    verify_current,
    verify_row,
)
from modelward.services.tokens import AuthenticationError
from modelward.services.users import require
from modelward.storage.metadata.auth_repository import AuthRepository, IssuerRecord, MappingRecord
from modelward.storage.metadata.ledger_repository import format_time

ASYMMETRIC_ALGORITHMS = (
    "RS256",
    "RS384",
    "RS512",
    "PS256",
    "PS384",
    "PS512",
    "ES256",
    "ES384",
    "ES512",
    "EdDSA",
)
DEFAULT_ALGORITHMS = ("RS256", "ES256")
JWKS_TTL_SECONDS = 300.0
_REFETCH_AFTER_SECONDS = 30.0
_LEEWAY_SECONDS = 30
MAX_JWT_BYTES = 16_384

JwksFetcher = Callable[[str], Mapping[str, Any]]
_log = logging.getLogger("modelward.auth")


def issuer_subject(issuer: str) -> str:
    """The ledger subject of an issuer's events (its configuration and claim mappings)."""
    return f"oidc:{issuer}"


def parse_algorithms(text: str | None) -> tuple[str, ...]:
    if not text:
        return DEFAULT_ALGORITHMS
    chosen = tuple(a.strip() for a in text.split(",") if a.strip())
    bad = [a for a in chosen if a not in ASYMMETRIC_ALGORITHMS]
    if bad or not chosen:
        raise InputError(
            f"--algorithms {text!r}: accepted are {', '.join(ASYMMETRIC_ALGORITHMS)} "
            "(no 'none' and no HMAC: a JWKS holds public keys)"
        )
    return chosen


def parse_jwks(text: str, where: str) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: not a JSON Web Key Set: {exc}") from exc
    keys = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(keys, list) or not all(isinstance(k, dict) for k in keys):
        raise InputError(f"{where}: a JWKS is an object with a 'keys' list")
    if any("d" in k or k.get("kty") == "oct" for k in keys):
        raise InputError(f"{where}: the JWKS holds private or symmetric keys; give public keys")
    return dict(data)


class JwksCache:
    """Fetched key sets by URL, kept for `ttl` seconds; refetched early (at most every 30 s)
    when a JWT names a key id the cached set does not have."""

    def __init__(self, fetch: JwksFetcher, ttl: float = JWKS_TTL_SECONDS) -> None:
        self._fetch = fetch
        self._ttl = ttl
        self._cached: dict[str, tuple[float, dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, want_kid: str | None) -> dict[str, Any]:
        now = time.monotonic()
        with self._lock:
            hit = self._cached.get(url)
        if hit is not None:
            age = now - hit[0]
            has_kid = want_kid is None or any(k.get("kid") == want_kid for k in hit[1]["keys"])
            if age < self._ttl and (has_kid or age < _REFETCH_AFTER_SECONDS):
                return hit[1]
        data = parse_jwks(json.dumps(dict(self._fetch(url))), url)
        with self._lock:
            self._cached[url] = (now, data)
        return data


@dataclass(frozen=True)
class IssuerView:
    issuer: IssuerRecord
    mappings: list[MappingRecord]

    def to_dict(self) -> dict[str, Any]:
        return {**self.issuer.to_dict(), "mappings": [m.to_dict() for m in self.mappings]}


class OidcService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def _require_admin(self, conn: Any) -> None:
        require(conn, self.actor, Action.ADD_USER, load_gate_config(self.ctx).permissions)

    def add_issuer(
        self,
        issuer: str,
        audience: str,
        *,
        jwks_url: str | None = None,
        jwks_text: str | None = None,
        algorithms: tuple[str, ...] = DEFAULT_ALGORITHMS,
    ) -> IssuerRecord:
        if not issuer.startswith(("https://", "http://")) or len(issuer) > 500:
            raise InputError(f"issuer {issuer!r} must be the issuer's URL (its 'iss' claim)")
        if not audience.strip():
            raise InputError("--audience must not be empty")
        if (jwks_url is None) == (jwks_text is None):
            raise InputError("give exactly one of --jwks-url and --jwks-file")
        if jwks_url is not None and not (
            jwks_url.startswith("https://") or _loopback_http(jwks_url)
        ):
            raise InputError(
                f"--jwks-url {jwks_url!r} must be an https URL (plain http only on loopback): "
                "whoever can change the key set fetched over plain http can mint identities"
            )
        jwks = None
        if jwks_text is not None:
            jwks = canonical_json(parse_jwks(jwks_text, "--jwks-file")).decode("utf-8")
        parse_algorithms(",".join(algorithms))
        now = utc_now()
        record = IssuerRecord(
            issuer, audience, jwks_url, jwks, algorithms, format_time(now), self.actor
        )
        with self.ctx.database.transaction() as conn:
            self._require_admin(conn)
            AuthRepository(conn).add_issuer(record, None)
            anchored_append(
                conn,
                self.actor,
                "oidc.issuer.add",
                issuer_subject(issuer),
                {
                    "issuer": issuer,
                    "audience": audience,
                    "jwks_url": jwks_url,
                    "jwks_digest": _sha256(jwks) if jwks else None,
                    "algorithms": list(algorithms),
                },
                now,
                rows=[("oidc_issuers", issuer)],
            )
        return record

    def map_claims(self, issuer: str, claims: Mapping[str, str], user: str) -> MappingRecord:
        validate_name(user, "user name")
        if not claims:
            raise InputError("a mapping needs at least one --claim NAME=VALUE")
        if "iss" in claims or "aud" in claims:
            raise InputError("iss and aud are checked for every token; map other claims")
        claims_json = canonical_json(dict(claims)).decode("utf-8")
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            self._require_admin(conn)
            repo = AuthRepository(conn)
            if repo.issuer(issuer) is None:
                raise NotFoundError(f"issuer {issuer!r} is not configured: `modelward oidc add`")
            role, problem = trusted_role(conn, user)
            if problem is not None:
                raise VerificationError(f"{user!r}: {problem}; no mapping is made to them")
            if role is None:
                raise NotFoundError(
                    f"{user!r} is not a user of this registry; add the service identity first "
                    f"with `modelward users add {user} --role trainer`"
                )
            mapping_id = repo.add_mapping(
                issuer, claims_json, user, format_time(now), self.actor, None
            )
            anchored_append(
                conn,
                self.actor,
                "oidc.mapping.add",
                issuer_subject(issuer),
                {"issuer": issuer, "claims": dict(claims), "user": user, "mapping_id": mapping_id},
                now,
                rows=[("oidc_mappings", str(mapping_id))],
            )
        return MappingRecord(mapping_id, issuer, dict(claims), user, format_time(now), self.actor)

    def list(self) -> builtins.list[IssuerView]:
        with self.ctx.database.read() as conn:
            self._require_admin(conn)
            repo = AuthRepository(conn)
            return [IssuerView(i, repo.mappings(i.issuer)) for i in repo.issuers()]


def authenticate_jwt(
    context: RegistryContext, text: str, now: datetime, jwks: JwksCache
) -> Principal:
    """The registry user a presented OIDC JWT maps to; AuthenticationError otherwise."""
    try:
        import jwt
    except ImportError as exc:  # pragma: no cover - PyJWT is a server dependency
        raise DependencyError("OIDC needs PyJWT: pip install 'modelward[server]'") from exc
    if len(text) > MAX_JWT_BYTES:
        raise AuthenticationError("the bearer token is too long")
    try:
        header = jwt.get_unverified_header(text)
        unverified = jwt.decode(text, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"not a JWT: {exc}") from None
    issuer_name = unverified.get("iss")
    if not isinstance(issuer_name, str):
        raise AuthenticationError("the JWT has no issuer")
    with context.database.read() as conn:
        repo = AuthRepository(conn)
        issuer = repo.issuer(issuer_name)
        if issuer is None:
            raise AuthenticationError(f"issuer {issuer_name!r} is not trusted by this registry")
        # Issuer and mapping rows decide who a bearer is: each must be what the ledger recorded
        # (an inserted or edited row is refused; a mapping that fails is never matched).
        problem = verify_current(conn, "oidc_issuers", issuer_name, issuer_subject(issuer_name))
        if problem is not None:
            raise AuthenticationError(f"{problem}; it is not trusted")
        mappings = []
        for mapping in repo.mappings(issuer_name):
            mapping_problem = verify_row(conn, "oidc_mappings", str(mapping.id))
            if mapping_problem is None:
                mappings.append(mapping)
            else:
                _log.warning("OIDC claim mapping refused: %s", mapping_problem)
    alg = header.get("alg")
    if not isinstance(alg, str) or alg not in issuer.algorithms:
        raise AuthenticationError(
            f"algorithm {alg!r} is not accepted for {issuer_name} "
            f"(accepted: {', '.join(issuer.algorithms)})"
        )
    kid = header.get("kid")
    key_set = (
        json.loads(issuer.jwks)
        if issuer.jwks is not None
        else jwks.get(str(issuer.jwks_url), kid if isinstance(kid, str) else None)
    )
    key = _select_key(key_set, kid, alg, issuer_name)
    try:
        claims = jwt.decode(
            text,
            key=key,
            algorithms=[alg],
            audience=issuer.audience,
            issuer=issuer.issuer,
            leeway=_LEEWAY_SECONDS,
            options={"require": ["exp", "iat", "iss", "aud", "sub"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"JWT from {issuer_name} refused: {exc}") from None
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub.strip():
        raise AuthenticationError(f"JWT from {issuer_name} refused: its 'sub' claim is empty")
    for name in ("exp", "iat", "nbf"):
        if name in claims and (
            isinstance(claims[name], bool) or not isinstance(claims[name], int | float)
        ):
            raise AuthenticationError(f"JWT from {issuer_name} refused: {name!r} is not a number")
    iat = claims.get("iat")
    if isinstance(iat, (int, float)) and iat > now.timestamp() + _LEEWAY_SECONDS:
        raise AuthenticationError(f"JWT from {issuer_name} refused: issued in the future")
    for mapping in mappings:
        if all(str(claims.get(k)) == v and k in claims for k, v in mapping.claims.items()):
            return Principal(
                name=mapping.user,
                issuer=issuer_name,
                token_id=str(claims["jti"]) if "jti" in claims else None,
                subject=str(claims["sub"]),
                claims={k: claims[k] for k in sorted(claims) if isinstance(claims[k], str)},
            )
    raise AuthenticationError(
        f"no claim mapping of {issuer_name} matches this token (sub {claims.get('sub')!r})"
    )


def _select_key(key_set: Mapping[str, Any], kid: object, alg: str, issuer: str) -> Any:
    import jwt

    keys = [k for k in key_set.get("keys", []) if isinstance(k, dict)]
    if kid is None:
        if len(keys) != 1:
            raise AuthenticationError(f"the JWT names no key id and {issuer} has {len(keys)} keys")
        chosen = keys[0]
    else:
        found = [k for k in keys if k.get("kid") == kid]
        if not found:
            raise AuthenticationError(f"key id {kid!r} is not in the JWKS of {issuer}")
        chosen = found[0]
    if chosen.get("kty") == "oct" or "d" in chosen:
        raise AuthenticationError(f"key {kid!r} of {issuer} is not a public key")
    if chosen.get("alg") not in (None, alg):
        raise AuthenticationError(f"key {kid!r} of {issuer} is for {chosen.get('alg')}, not {alg}")
    try:
        return jwt.PyJWK(chosen, algorithm=alg).key
    except jwt.PyJWTError as exc:
        raise AuthenticationError(f"key {kid!r} of {issuer} does not fit {alg}: {exc}") from None


def _loopback_http(url: str) -> bool:
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "::1", "localhost")


def _sha256(text: str) -> str:
    import hashlib

    return hashlib.sha256(text.encode("utf-8")).hexdigest()
