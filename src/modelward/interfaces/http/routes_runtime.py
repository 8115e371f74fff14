"""Drift and alert deliveries over HTTP: a drift report of an environment's release (`GET`,
or `POST` with `notify` to alert when it drifted) and the latest alert delivery attempts.
Each endpoint authenticates, authorises, calls one service with the principal bound, and
returns its result; the services check again. Webhook configuration (which holds the HMAC
secrets) is not served: it is set on the registry's host.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(tags=["runtime"])


class DriftRequest(BaseModel):
    notify: bool = False


def _drift(
    registry: ServerRegistry, principal: Principal, model: str, env: str, notify: bool
) -> Any:
    from modelward.services.canary import telemetry_source
    from modelward.services.drift import DriftService

    service = DriftService(registry.ctx, principal.name, source=telemetry_source(registry.ctx))
    with bind_principal(principal):
        return service.report(model, env, notify=notify)


@router.get("/drift/{model}/{environment}")
def drift(
    model: str, environment: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW, model)
    result: dict[str, Any] = _drift(registry, principal, model, environment, False)
    return result


@router.post("/drift/{model}/{environment}")
def drift_and_notify(
    model: str,
    environment: str,
    body: DriftRequest,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    """The drift report; with `notify`, an alert goes out when it drifted."""
    authorise(registry.ctx, principal, Action.PROMOTE if body.notify else Action.VIEW, model)
    result: dict[str, Any] = _drift(registry, principal, model, environment, body.notify)
    return result


@router.get("/alerts/deliveries")
def deliveries(
    limit: int = Query(default=50, ge=1, le=1000),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> list[dict[str, Any]]:
    """The latest delivery attempts of every alert (registry-wide: not for model-limited
    tokens)."""
    from modelward.services.alerts import AlertService

    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        rows: list[dict[str, Any]] = AlertService(registry.ctx, principal.name).deliveries(limit)
    return rows
