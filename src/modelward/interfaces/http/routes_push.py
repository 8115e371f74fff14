"""Pushing over HTTP in two steps, with memory bounded whatever the bundle's size.

1. `PUT /uploads/{sha256}` streams one file's bytes; the server hashes them while spooling
   (a small memory buffer, then a temporary file), refuses a digest mismatch, stores the blob
   in the shared blob store under its digest (atomically, by the store) and records that the
   caller sent it. `HEAD` tells whether the caller may name a stored blob without sending it
   again: one they sent before, or a file of a version they may view (`services.uploads`).
2. `POST /models/{name}/versions` names the files (POSIX paths, which cannot leave the bundle)
   and their digests; the server carries the push out (`services.push_orders`): it lays the
   stored blobs out in a private folder and calls the registry's one push, which scans, signs
   and commits the version in one transaction. A bundle of `push_job_bytes` or more (or any,
   with `"background": true`) is carried out as a `push` job instead: the answer is 202 with
   the job, which any server process may run and the client polls (`GET /jobs/{id}`). A crash
   before the commit leaves only unreferenced blobs, which `modelward fsck` removes; a version
   is never half-visible.
"""

from __future__ import annotations

import hashlib
import tempfile
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelward.app import ServerRegistry
from modelward.core.principal import Principal
from modelward.core.roles import Action
from modelward.errors import DigestMismatchError
from modelward.interfaces.http.errors import RequestTooLargeError
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise
from modelward.services.push_orders import (
    MAX_FILES,
    PUSH_ORDER,
    PUSH_PRINCIPAL,
    OrderedFile,
    PushOrder,
    carry_out,
    check_digest,
    principal_record,
    require_held,
)
from modelward.services.uploads import UploadService

router = APIRouter(tags=["push"])
_SPOOL_IN_MEMORY = 1024 * 1024


@router.head("/uploads/{digest}")
def upload_exists(
    digest: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> Response:
    authorise(registry.ctx, principal, Action.PUSH, checked_later=True)
    found = UploadService(registry.ctx, principal).held(check_digest(digest))
    return Response(status_code=200 if found else 404)


@router.get("/uploads/{digest}")
def upload_state(
    digest: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    """`{"digest", "held"}`: what HEAD says, in a body (a refusal then carries its reason)."""
    authorise(registry.ctx, principal, Action.PUSH, checked_later=True)
    held = UploadService(registry.ctx, principal).held(check_digest(digest))
    return {"digest": digest, "held": held}


@router.put("/uploads/{digest}")
async def upload(
    digest: str,
    request: Request,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    check_digest(digest)
    await run_in_threadpool(
        authorise, registry.ctx, principal, Action.PUSH, None, checked_later=True
    )
    limit = registry.settings.max_upload_bytes
    hasher = hashlib.sha256()
    size = 0
    with tempfile.SpooledTemporaryFile(
        max_size=_SPOOL_IN_MEMORY, dir=str(registry.settings.spool_dir), prefix="mw-upload-"
    ) as spool:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise RequestTooLargeError(f"the file is larger than the limit of {limit} bytes")
            hasher.update(chunk)
            spool.write(chunk)
        if hasher.hexdigest() != digest:
            raise DigestMismatchError(
                f"the uploaded bytes hash to sha256:{hasher.hexdigest()}, not sha256:{digest}; "
                "nothing was stored"
            )
        spool.seek(0)
        info = await run_in_threadpool(registry.ctx.blobs.put_stream, spool, digest)
    await run_in_threadpool(UploadService(registry.ctx, principal).claim, digest)
    return {"digest": info.digest, "size": info.size}


class PushedFile(BaseModel):
    name: str = Field(min_length=1, max_length=4096)
    digest: str = Field(min_length=64, max_length=64)
    size: int = Field(ge=0)


class PushRequest(BaseModel):
    files: list[PushedFile] = Field(min_length=1, max_length=MAX_FILES)
    description: str = Field(default="", max_length=10_000)
    accept_malformed: list[str] = Field(default_factory=list, max_length=100)
    change: str | None = Field(default=None, max_length=40)
    compat: str | None = Field(default=None, max_length=40)
    single_file_name: str | None = Field(default=None, max_length=255)
    # the uploader's OMS signature (Sigstore bundle JSON) with the PEM key it verifies with;
    # a training-provenance document (base64 of the file) with an extra key to check it with
    signature: dict[str, Any] | None = None
    public_key: str | None = Field(default=None, max_length=20_000)
    provenance: str | None = Field(default=None, max_length=900_000)
    provenance_key: str | None = Field(default=None, max_length=20_000)
    # carry the push out as a job whatever its size (the server does so anyway from
    # `push_job_bytes` on); the answer is then 202 with the job to poll
    background: bool = False

    def order(self, model: str) -> PushOrder:
        return PushOrder(
            model=model,
            files=tuple(OrderedFile(f.name, f.digest, f.size) for f in self.files),
            description=self.description,
            accept_malformed=tuple(self.accept_malformed),
            change=self.change,
            compat=self.compat,
            single_file_name=self.single_file_name,
            signature=self.signature,
            public_key=self.public_key,
            provenance=self.provenance,
            provenance_key=self.provenance_key,
        )


@router.post("/models/{name}/versions", status_code=201)
def push(
    name: str,
    body: PushRequest,
    response: Response,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    order = body.order(name)
    order.check()
    authorise(registry.ctx, principal, Action.PUSH, model=name)
    if body.background or order.total_size >= registry.settings.push_job_bytes:
        require_held(registry.ctx, principal, order)  # now, not in the job: files come first
        payload = {
            "model": order.model,
            "files": len(order.files),
            "bytes": order.total_size,
            PUSH_ORDER: order.to_dict(),
            PUSH_PRINCIPAL: principal_record(principal),
        }
        job = registry.jobs().enqueue("push", payload, principal.name)
        response.status_code = 202
        return {"job": job.to_dict(), "status": f"/api/v1/jobs/{job.id}"}
    result = carry_out(registry.ctx, principal, order, registry.settings.spool_dir)
    if not result["created"]:
        response.status_code = 200
    return result
