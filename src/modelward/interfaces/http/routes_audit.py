"""The ledger over HTTP: events, signed checkpoints, and C2SP tlog-proofs of one event.

Registry-wide reads: a token limited to some models may not use them.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(prefix="/audit", tags=["audit"])


@router.get("/log")
def log(
    since: int = Query(0, ge=0, le=2**62),
    limit: int = Query(1000, ge=0, le=10_000),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW)
    return [event.to_dict() for event in registry.audit().log(since, limit)]


@router.post("/checkpoint")
def checkpoint(
    principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, str]:
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        return {"checkpoint": registry.audit().checkpoint()}


@router.get("/proof/{seq}")
def proof(
    seq: int, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        return {"seq": seq, "proof": registry.audit().proof(seq)}
