"""Authenticating HTTP requests: `Authorization: Bearer <API token or OIDC JWT>` to a Principal.
(The authorisation check every endpoint makes is `services.access.authorise`.)

Failed authentications are logged as one JSON line each (client address, reason, never the
credential) and rate-limited per client address by `services.auth_failures.FailureLimiter`,
whose counts every server process shares through the database.
"""

from __future__ import annotations

import json
import logging

from fastapi import Request

from modelward.app import ServerRegistry
from modelward.core.principal import Principal
from modelward.errors import ModelwardError, PermissionDeniedError
from modelward.interfaces.http.errors import AuthenticationRequiredError, RateLimitedError
from modelward.services.auth_failures import FailureLimiter

log = logging.getLogger("modelward.http.auth")


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def refuse_if_limited(limiter: FailureLimiter, client: str) -> None:
    if limiter.blocked(client):
        raise RateLimitedError("too many failed authentications from this address; wait a minute")


def authenticate_request(
    registry: ServerRegistry, limiter: FailureLimiter, request: Request
) -> Principal:
    client = client_address(request)
    refuse_if_limited(limiter, client)
    header = request.headers.get("authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    try:
        if scheme.lower() != "bearer" or not credential:
            raise AuthenticationRequiredError(
                "authentication required: send 'Authorization: Bearer <token>' "
                "(MODELWARD_TOKEN for the CLI)"
            )
        return registry.authenticate(credential)
    except (PermissionDeniedError, ModelwardError) as exc:
        limiter.failed(client)
        log.warning(
            json.dumps(
                {
                    "event": "authentication.failed",
                    "client": client,
                    "path": request.url.path,
                    "method": request.method,
                    "reason": str(exc),
                },
                sort_keys=True,
            )
        )
        raise
