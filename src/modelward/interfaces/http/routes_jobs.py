"""Background jobs over HTTP: enqueue a job (today: `verify`, re-hashing a version's blobs) and
read its state and result. Jobs are rows in the database; any server process's worker runs
them (see `services.jobs`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(prefix="/jobs", tags=["jobs"])


class JobRequest(BaseModel):
    kind: str = Field(max_length=100)
    uri: str = Field(max_length=400)


@router.post("", status_code=202)
def enqueue(
    body: JobRequest, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    from modelward.services.jobs import JobService

    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        principal.check_model(registry.registry(principal).resolve(body.uri).model)
    if body.kind != "verify":
        raise InputError(f"unknown job kind {body.kind!r}; kinds are verify")
    job = JobService(registry.ctx).enqueue(body.kind, {"uri": body.uri}, principal.name)
    return job.to_dict()


@router.get("/{job_id}")
def get(
    job_id: int = Path(..., ge=1, le=2**62),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    from modelward.services.jobs import JobService

    authorise(registry.ctx, principal, Action.VIEW)
    return JobService(registry.ctx).get(job_id).to_dict()
