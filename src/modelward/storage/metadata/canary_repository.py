"""All SQL of canaries, their verdicts, alert webhooks and alert deliveries.

Bound to one connection (one transaction, owned by the calling service). Never commits and
checks nothing: rows are what the database says until a service verifies them against the
ledger (`services.state_integrity`). Rows are only ever inserted.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from modelward.storage.metadata.canary_tables import (
    alert_deliveries,
    alert_webhooks,
    canaries,
    canary_verdicts,
)


@dataclass(frozen=True)
class CanaryRow:
    id: int
    model: str
    environment: str
    candidate_version: int
    baseline_version: int
    baseline_release_id: str
    plan: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class VerdictRow:
    id: int
    canary_id: int
    verdict: str
    statement_digest: str
    envelope: str
    acted: str | None
    created_at: str
    created_by: str


@dataclass(frozen=True)
class WebhookRow:
    id: int
    name: str
    url: str
    key_id: str
    secret: str
    enabled: bool
    created_at: str
    created_by: str


@dataclass(frozen=True)
class DeliveryRow:
    webhook_id: int
    delivery_id: str
    event: str
    payload_digest: str
    attempt: int
    outcome: str
    http_status: int | None
    error: str | None
    at: str

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _inserted_id(key: Any) -> int:
    return int(key[0])


class CanaryRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def add_canary(
        self,
        *,
        model: str,
        environment: str,
        candidate_version: int,
        baseline_version: int,
        baseline_release_id: str,
        plan: str,
        at: str,
        by: str,
    ) -> int:
        result = self._conn.execute(
            insert(canaries).values(
                model=model,
                environment=environment,
                candidate_version=candidate_version,
                baseline_version=baseline_version,
                baseline_release_id=baseline_release_id,
                plan=plan,
                created_at=at,
                created_by=by,
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def latest_canary(self, model: str, environment: str) -> CanaryRow | None:
        row = self._conn.execute(
            select(*(c for c in canaries.c if c.name != "ledger_seq"))
            .where(canaries.c.model == model, canaries.c.environment == environment)
            .order_by(canaries.c.id.desc())
            .limit(1)
        ).first()
        return None if row is None else CanaryRow(**row._mapping)

    def latest_canaries(self) -> list[CanaryRow]:
        """The newest canary of every (model, environment), oldest first."""
        newest = select(func.max(canaries.c.id)).group_by(canaries.c.model, canaries.c.environment)
        rows = self._conn.execute(
            select(*(c for c in canaries.c if c.name != "ledger_seq"))
            .where(canaries.c.id.in_(newest))
            .order_by(canaries.c.id)
        )
        return [CanaryRow(**r._mapping) for r in rows]

    def add_verdict(
        self,
        *,
        canary_id: int,
        verdict: str,
        statement_digest: str,
        envelope: str,
        acted: str | None,
        at: str,
        by: str,
    ) -> int:
        result = self._conn.execute(
            insert(canary_verdicts).values(
                canary_id=canary_id,
                verdict=verdict,
                statement_digest=statement_digest,
                envelope=envelope,
                acted=acted,
                created_at=at,
                created_by=by,
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def verdicts(self, canary_id: int) -> list[VerdictRow]:
        rows = self._conn.execute(
            select(*(c for c in canary_verdicts.c if c.name != "ledger_seq"))
            .where(canary_verdicts.c.canary_id == canary_id)
            .order_by(canary_verdicts.c.id)
        )
        return [VerdictRow(**r._mapping) for r in rows]

    def add_webhook(
        self, *, name: str, url: str, key_id: str, secret: str, enabled: bool, at: str, by: str
    ) -> int:
        result = self._conn.execute(
            insert(alert_webhooks).values(
                name=name,
                url=url,
                key_id=key_id,
                secret=secret,
                enabled=enabled,
                created_at=at,
                created_by=by,
            )
        )
        return _inserted_id(result.inserted_primary_key)

    def webhooks(self) -> list[WebhookRow]:
        """Every webhook row, oldest first (the newest row of a name is its current one)."""
        rows = self._conn.execute(
            select(*(c for c in alert_webhooks.c if c.name != "ledger_seq")).order_by(
                alert_webhooks.c.id
            )
        )
        return [WebhookRow(**{**r._mapping, "enabled": bool(r.enabled)}) for r in rows]

    def add_delivery(self, webhook_id: int, row: DeliveryRow) -> None:
        values = row.to_dict()
        values["webhook_id"] = webhook_id
        self._conn.execute(insert(alert_deliveries).values(**values))

    def deliveries(self, limit: int = 100) -> list[DeliveryRow]:
        rows = self._conn.execute(
            select(*(c for c in alert_deliveries.c if c.name != "id"))
            .order_by(alert_deliveries.c.id.desc())
            .limit(limit)
        )
        return [DeliveryRow(**r._mapping) for r in rows]
