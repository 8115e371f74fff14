"""Canary judgement over HTTP: start (optionally watched: the servers' job workers then queue
an acting judgement every interval), status, judge (optionally acting), shadow, and a queued
judgement (a `canary.judge` job). Each endpoint authenticates, authorises,
calls one `CanaryService` method with the principal bound, and returns its result; the service
checks its own writes again.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(prefix="/canaries", tags=["canary"])


class StartRequest(BaseModel):
    candidate: str = Field(max_length=400)
    baseline: str | None = Field(default=None, max_length=400)
    metrics: list[str] = Field(default_factory=list, max_length=20)
    alpha: float = Field(default=0.05, gt=0, lt=1)
    min_samples: int = Field(default=100, ge=1, le=10_000_000)
    warmup_s: float = Field(default=0.0, ge=0, le=86_400)
    watch_s: float | None = Field(default=None, ge=1, le=86_400)


class JudgeRequest(BaseModel):
    act: bool = False


def _service(registry: ServerRegistry, principal: Principal) -> Any:
    from modelward.services.canary import CanaryService, telemetry_source

    return CanaryService(registry.ctx, actor=principal.name, source=telemetry_source(registry.ctx))


@router.post("/{model}/{environment}")
def start(
    model: str,
    environment: str,
    body: StartRequest,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.PROMOTE, model)
    with bind_principal(principal):
        result: dict[str, Any] = _service(registry, principal).start(
            model,
            environment,
            body.candidate,
            body.baseline,
            body.metrics,
            alpha=body.alpha,
            min_samples=body.min_samples,
            warmup_s=body.warmup_s,
            watch_s=body.watch_s,
        )
    return result


@router.get("/{model}/{environment}")
def status(
    model: str, environment: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW, model)
    with bind_principal(principal):
        result: dict[str, Any] = _service(registry, principal).status(model, environment)
    return result


@router.post("/{model}/{environment}/verdicts")
def judge(
    model: str,
    environment: str,
    body: JudgeRequest,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.PROMOTE, model)
    with bind_principal(principal):
        result: dict[str, Any] = (
            _service(registry, principal).judge(model, environment, act=body.act).to_dict()
        )
    return result


@router.get("/{model}/{environment}/shadow")
def shadow(
    model: str, environment: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW, model)
    with bind_principal(principal):
        result: dict[str, Any] = _service(registry, principal).shadow(model, environment)
    return result


@router.post("/{model}/{environment}/jobs", status_code=202)
def enqueue_judgement(
    model: str, environment: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    """Queue one judgement that acts on a rollback, run by a server's job worker as the caller."""
    from modelward.services.jobs import JobService

    authorise(registry.ctx, principal, Action.ROLLBACK, model)
    payload = {"model": model, "environment": environment, "act": True}
    return JobService(registry.ctx).enqueue("canary.judge", payload, principal.name).to_dict()
