"""Background jobs over HTTP: enqueue a job (`verify`, re-hashing a version's blobs; pushes and
canary judgements queue their own) and read its state and result. Jobs are rows in the
database; any server process's worker runs them (see `services.jobs`). A job is readable by
the user who queued it, and by those who may view the model it is about."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Path
from pydantic import BaseModel, Field

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError, NotFoundError, PermissionDeniedError
from modelward.interfaces.http.routes_models import absent_unless_visible, check_named_model
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
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    if body.kind != "verify":
        raise InputError(f"unknown job kind {body.kind!r}; kinds are verify")
    check_named_model(principal, body.uri)
    with absent_unless_visible(body.uri), bind_principal(principal):
        model = registry.registry(principal).resolve(body.uri).model
        authorise(registry.ctx, principal, Action.VIEW, model=model)
    job = registry.jobs().enqueue(body.kind, {"uri": body.uri}, principal.name)
    return job.to_dict()


@router.get("/{job_id}")
def get(
    job_id: int = Path(..., ge=1, le=2**62),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    from modelward.core.names import parse_uri

    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    jobs = registry.jobs()
    job = jobs.get(job_id)
    payload = job.payload
    model = payload.get("model")
    if model is None and isinstance(payload.get("uri"), str):
        model = parse_uri(payload["uri"]).name
    # readable to whoever may view its model (a job about no model: registry-wide view), and
    # to the user who queued it with a credential that reaches that model; to anyone else
    # the job does not exist (its answer must not name another team's model)
    try:
        if model is not None:
            principal.check_model(str(model))
        if job.created_by != principal.name:
            authorise(registry.ctx, principal, Action.VIEW, model=str(model) if model else None)
    except PermissionDeniedError:
        raise NotFoundError(f"no job {job_id}") from None
    return jobs.trusted(job).to_dict()
