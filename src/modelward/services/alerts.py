"""Alerts: webhooks an admin configures, and sending an event to every enabled one.

`add_webhook` (admin only) stores a webhook (name, URL, key id, HMAC secret) as an insert-only
`alert_webhooks` row anchored by an `alerts.webhook` ledger event; the newest row of a name is
its current configuration (`enabled: false` turns it off). `send` posts the signed JSON body
(`runtime.alerts`) to each current, enabled webhook whose row checks out against the ledger,
retrying with exponential back-off (bounded: `MAX_ATTEMPTS`; each attempt has a total deadline,
`DEADLINE_S`, and redirects are never followed: a 3xx is a failed attempt, recorded with its
status), records every attempt in
`alert_deliveries`, and writes a log line (logger `modelward.alerts`) whatever happens. A
webhook row that fails its ledger check is skipped and named in the log (an attacker with
database access cannot redirect alerts). Delivery problems never raise: an alert is best
effort, its record is not.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import json
import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from modelward.core.roles import Action, Role
from modelward.errors import InputError, PermissionDeniedError
from modelward.runtime.alerts import (
    FIRST_DELAY_S,
    MAX_ATTEMPTS,
    alert_body,
    alert_headers,
    backoff_delays,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.state_integrity import anchored_append, verify_row
from modelward.services.users import require, role_of
from modelward.storage.metadata.canary_repository import (
    CanaryRepository,
    DeliveryRow,
    WebhookRow,
)
from modelward.storage.metadata.ledger_repository import format_time

LOG = logging.getLogger("modelward.alerts")
DEADLINE_S = 10.0  # the whole of one attempt: connect, send, and the answer's status line

Post = Callable[[str, bytes, dict[str, str]], int]  # url, body, headers -> HTTP status


def http_post(
    url: str, body: bytes, headers: dict[str, str], *, deadline_s: float = DEADLINE_S
) -> int:
    """POST `body` and return the answer's status. Redirects are never followed (a 3xx is
    returned like any other status, and is not a delivery); the whole request must finish
    within `deadline_s`, however slowly the receiver drips its answer (TimeoutError)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("not an http or https URL with a host")
    https = parts.scheme == "https"
    port = parts.port or (443 if https else 80)
    started = time.monotonic()

    def remaining() -> float:
        left = deadline_s - (time.monotonic() - started)
        if left <= 0:
            raise TimeoutError(f"no complete answer within {deadline_s:g} s")
        return left

    connection: http.client.HTTPConnection = (
        http.client.HTTPSConnection(parts.hostname, port, timeout=remaining())
        if https
        else http.client.HTTPConnection(parts.hostname, port, timeout=remaining())
    )
    expired = threading.Event()

    def expire() -> None:  # unblocks a read that the per-read timeout would let run on
        expired.set()
        if connection.sock is not None:
            with contextlib.suppress(OSError):
                connection.sock.shutdown(socket.SHUT_RDWR)

    timer = threading.Timer(remaining(), expire)
    timer.daemon = True
    timer.start()
    headers = dict(headers)
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        headers["Authorization"] = "Basic " + base64.b64encode(credentials.encode()).decode()
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    try:
        connection.request("POST", target, body=body, headers=headers)
        response = connection.getresponse()
        status = int(response.status)
        response.read(64 * 1024)  # what a receiver says is not needed; at most this much
        remaining()
        return status
    except (OSError, http.client.HTTPException):
        if expired.is_set():
            raise TimeoutError(f"no complete answer within {deadline_s:g} s") from None
        raise
    finally:
        timer.cancel()
        connection.close()


@dataclass(frozen=True)
class SendReport:
    event: str
    delivery_id: str
    delivered: int
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def redacted_url(url: str) -> str:
    """`url` with any user name and password in it shown as `***`."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=f"***@{host}").geturl()


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"webhook URL {url!r} must be an http or https URL with a host")
    return url


def _check_label(value: str, what: str, longest: int) -> str:
    if not value or len(value) > longest or any(ord(c) < 33 or ord(c) > 126 for c in value):
        raise InputError(f"the {what} must be 1 to {longest} printable characters, no spaces")
    return value


class AlertService:
    def __init__(
        self,
        context: RegistryContext,
        actor: str | None = None,
        post: Post = http_post,
        sleep: Callable[[float], None] = time.sleep,
        attempts: int = MAX_ATTEMPTS,
        first_delay_s: float = FIRST_DELAY_S,
    ) -> None:
        self.ctx = context
        self.actor = actor or current_actor()
        self._post = post
        self._sleep = sleep
        self._attempts = max(1, min(attempts, 10))
        self._first_delay = first_delay_s

    def add_webhook(
        self, name: str, url: str, key_id: str, secret: bytes, enabled: bool = True
    ) -> dict[str, Any]:
        _check_label(name, "webhook name", 100)
        _check_label(key_id, "key id", 100)
        _check_url(url)
        if len(secret) < 16:
            raise InputError("the webhook secret must be at least 16 bytes")
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.VIEW)
            if role_of(conn, self.actor) is not Role.ADMIN:
                raise PermissionDeniedError(
                    f"{self.actor!r} is not an admin: only admins configure webhooks"
                )
            webhook_id = CanaryRepository(conn).add_webhook(
                name=name,
                url=url,
                key_id=key_id,
                secret=secret.hex(),
                enabled=enabled,
                at=format_time(now),
                by=self.actor,
            )
            anchored_append(
                conn,
                self.actor,
                "alerts.webhook",
                f"webhook:{name}",
                {"name": name, "url": redacted_url(url), "key_id": key_id, "enabled": enabled},
                now,
                rows=[("alert_webhooks", str(webhook_id))],
            )
        return {"name": name, "url": redacted_url(url), "key_id": key_id, "enabled": enabled}

    def webhooks(self) -> list[dict[str, Any]]:
        """The current configuration of each webhook (never its secret), with its check."""
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            current = _current(CanaryRepository(conn).webhooks())
            return [
                {
                    "id": w.id,
                    "name": w.name,
                    "url": redacted_url(w.url),
                    "key_id": w.key_id,
                    "enabled": w.enabled,
                    "set_at": w.created_at,
                    "set_by": w.created_by,
                    "problem": verify_row(conn, "alert_webhooks", str(w.id)),
                }
                for w in current
            ]

    def deliveries(self, limit: int = 100) -> list[dict[str, Any]]:
        if not 1 <= limit <= 10_000:
            raise InputError(f"a delivery listing holds 1 to 10000 rows, not {limit}")
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return [d.to_dict() for d in CanaryRepository(conn).deliveries(limit)]

    def send(self, event: str, payload: dict[str, Any]) -> SendReport:
        """Deliver `event` to every trusted, enabled webhook; record and log every attempt."""
        delivery_id = secrets.token_hex(16)
        sent_at = format_time(utc_now())
        body = alert_body(event, delivery_id, sent_at, payload)
        with self.ctx.database.read() as conn:
            hooks = _current(CanaryRepository(conn).webhooks())
            trusted, skipped = [], []
            for hook in hooks:
                problem = verify_row(conn, "alert_webhooks", str(hook.id))
                if problem is not None:
                    skipped.append(f"{hook.name}: {problem}")
                elif hook.enabled:
                    trusted.append(hook)
        LOG.warning(
            "alert %s",
            json.dumps(
                {"event": event, "delivery_id": delivery_id, "payload": payload},
                sort_keys=True,
                default=str,
            ),
        )
        for reason in skipped:
            LOG.error("alert %s: webhook skipped, %s", delivery_id, reason)
        delivered, failed = 0, []
        digest = "sha256:" + hashlib.sha256(body).hexdigest()
        for hook in trusted:
            ok = self._deliver(hook, event, delivery_id, body, digest)
            if ok:
                delivered += 1
            else:
                failed.append(hook.name)
        return SendReport(event, delivery_id, delivered, failed, skipped)

    def _deliver(
        self, hook: WebhookRow, event: str, delivery_id: str, body: bytes, digest: str
    ) -> bool:
        headers = alert_headers(event, delivery_id, hook.key_id, body, bytes.fromhex(hook.secret))
        delays = backoff_delays(self._attempts, self._first_delay)
        for attempt in range(1, self._attempts + 1):
            status: int | None = None
            error: str | None = None
            try:
                status = self._post(hook.url, body, headers)
            except (OSError, ValueError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
            ok = status is not None and 200 <= status < 300
            last = attempt == self._attempts
            outcome = "delivered" if ok else ("gave_up" if last else "failed")
            self._record(
                hook.id,
                DeliveryRow(
                    hook.id,
                    delivery_id,
                    event,
                    digest,
                    attempt,
                    outcome,
                    status,
                    error,
                    format_time(utc_now()),
                ),
            )
            LOG.warning(
                "alert %s to %s: attempt %d %s (status %s%s)",
                delivery_id,
                hook.name,
                attempt,
                outcome,
                status,
                f", {error}" if error else "",
            )
            if ok:
                return True
            if not last:
                self._sleep(delays[attempt - 1])
        return False

    def _record(self, webhook_id: int, row: DeliveryRow) -> None:
        with self.ctx.database.transaction() as conn:
            CanaryRepository(conn).add_delivery(webhook_id, row)


def _current(rows: list[WebhookRow]) -> list[WebhookRow]:
    latest: dict[str, WebhookRow] = {}
    for row in rows:
        latest[row.name] = row
    return sorted(latest.values(), key=lambda r: r.name)
