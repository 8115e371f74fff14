"""Authenticating HTTP requests: `Authorization: Bearer <API token or OIDC JWT>` to a Principal.
(The authorisation check every endpoint makes is `services.access.authorise`.)

Failed authentications are logged as one JSON line each (client address, reason, never the
credential) and rate-limited per client address: after `auth_failures_per_minute` failures in a
minute, that address gets 429 until the minute has passed. The limiter lives in the memory of
each server process (N processes allow N times the limit); put a shared limiter in the reverse
proxy when that matters.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time

from fastapi import Request

from modelward.app import ServerRegistry
from modelward.core.principal import Principal
from modelward.errors import ModelwardError, PermissionDeniedError
from modelward.interfaces.http.errors import AuthenticationRequiredError, RateLimitedError

log = logging.getLogger("modelward.http.auth")
_WINDOW_SECONDS = 60.0


class FailureLimiter:
    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, collections.deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> collections.deque[float]:
        entries = self._failures.setdefault(client, collections.deque())
        while entries and now - entries[0] > _WINDOW_SECONDS:
            entries.popleft()
        return entries

    def check(self, client: str) -> None:
        with self._lock:
            if len(self._recent(client, time.monotonic())) >= self.per_minute:
                raise RateLimitedError(
                    "too many failed authentications from this address; wait a minute"
                )

    def failed(self, client: str) -> None:
        with self._lock:
            now = time.monotonic()
            self._recent(client, now).append(now)
            if len(self._failures) > 10_000:  # forget the quietest addresses first
                for key in [k for k, v in self._failures.items() if not v][:5_000]:
                    del self._failures[key]


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def authenticate_request(
    registry: ServerRegistry, limiter: FailureLimiter, request: Request
) -> Principal:
    client = client_address(request)
    limiter.check(client)
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
