"""Pushing over HTTP in two steps, with memory bounded whatever the bundle's size.

1. `PUT /uploads/{sha256}` streams one file's bytes; the server hashes them while spooling
   (a small memory buffer, then a temporary file), refuses a digest mismatch, and stores the
   blob in the shared blob store under its digest (atomically, by the store). `HEAD` tells
   whether a blob is already stored, so unchanged files are not sent again.
2. `POST /models/{name}/versions` names the files (POSIX paths, which cannot leave the bundle)
   and their digests; the server lays the stored blobs out in a private temporary folder
   (verifying each on read) and calls the registry's one push, which scans, signs and commits
   the version in one transaction. A crash before the commit leaves only unreferenced blobs,
   which `modelward fsck` removes; a version is never half-visible.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from modelward.app import PUSH_FOLDER_PREFIX, ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import DigestMismatchError, InputError, NotFoundError
from modelward.interfaces.http.errors import RequestTooLargeError
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(tags=["push"])
_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_SPOOL_IN_MEMORY = 1024 * 1024
MAX_FILES = 100_000
MAX_PATH_DEPTH = 64  # folders within a bundle


def _digest(text: str) -> str:
    if not _DIGEST.match(text):
        raise InputError(f"{text[:80]!r} is not a SHA-256 digest (64 lowercase hex characters)")
    return text


@router.head("/uploads/{digest}")
def upload_exists(
    digest: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> Response:
    authorise(registry.ctx, principal, Action.PUSH, checked_later=True)
    found = registry.ctx.blobs.exists(_digest(digest))
    return Response(status_code=200 if found else 404)


@router.put("/uploads/{digest}")
async def upload(
    digest: str,
    request: Request,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    _digest(digest)
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


def safe_relative_path(name: str) -> PurePosixPath:
    """A bundle file name as a relative path that stays inside the bundle; InputError else."""
    if "\\" in name or "\x00" in name or any(ord(c) < 32 for c in name):
        raise InputError(f"file name {name[:200]!r} has a backslash or a control character")
    path = PurePosixPath(name)
    if path.is_absolute() or not path.parts:
        raise InputError(f"file name {name[:200]!r} must be a relative path")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise InputError(f"file name {name[:200]!r} has an empty, '.' or '..' part")
    return path


@router.post("/models/{name}/versions", status_code=201)
def push(
    name: str,
    body: PushRequest,
    response: Response,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    from modelward.core.names import validate_name
    from modelward.services.change import change_hook

    validate_name(name, "model name")
    authorise(registry.ctx, principal, Action.PUSH, model=name)
    single = len(body.files) == 1 and body.files[0].name == "."
    names = set()
    for entry in body.files:
        _digest(entry.digest)
        if not single:
            key = str(safe_relative_path(entry.name))
            if key in names:
                raise InputError(f"file {key!r} is named twice")
            parts = key.split("/")
            if len(parts) > MAX_PATH_DEPTH or any(len(p) > 255 for p in parts):
                raise InputError(
                    f"file {key[:80]!r}: at most {MAX_PATH_DEPTH} folders deep and 255 "
                    "characters a name"
                )
            names.add(key)
    folders = {"/".join(n.split("/")[:i]) for n in names for i in range(1, n.count("/") + 1)}
    clash = sorted(names & folders)
    if clash:
        raise InputError(f"{clash[0]!r} is named as a file and as a folder")
    blobs = registry.ctx.blobs
    missing = [f.name for f in body.files if not blobs.exists(f.digest)]
    if missing:
        raise NotFoundError(
            f"{len(missing)} file(s) were not uploaded first, e.g. {missing[0]!r}: "
            "PUT /api/v1/uploads/{sha256} each file, then commit"
        )
    single_name = "model"
    if single and body.single_file_name:
        single_name = str(safe_relative_path(body.single_file_name))
        if "/" in single_name or single_name == "bundle":
            raise InputError("single_file_name must be a file name (not a path, not 'bundle')")
    workdir = Path(tempfile.mkdtemp(prefix=PUSH_FOLDER_PREFIX, dir=registry.settings.spool_dir))
    try:
        root = workdir / "bundle"
        root.mkdir()
        for entry in body.files:
            target = workdir / single_name if single else root / entry.name
            target.parent.mkdir(parents=True, exist_ok=True)
            info = blobs.copy_to(entry.digest, target)
            if info.size != entry.size:
                raise InputError(f"{entry.name}: declared {entry.size} bytes, stored {info.size}")
        model_path = workdir / single_name if single else root
        accept = list(body.accept_malformed)
        change = change_hook(body.change, body.compat) if body.change or body.compat else None
        signature_path, verifier, provenance_path, provenance_keys = _push_evidence(body, workdir)
        with bind_principal(principal):
            service = registry.registry(principal)
            provenance = None
            if provenance_path is not None:
                from modelward.services.provenance import ProvenanceService

                provenance = ProvenanceService(service.ctx, service.actor).push_hook(
                    provenance_path, provenance_keys
                )
            result = service.push(
                model_path,
                name,
                description=body.description,
                signature_path=signature_path,
                public_key=verifier,
                accept_malformed=accept,
                change=change,
                provenance=provenance,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    if not result.created:
        response.status_code = 200
    return {**result.version.to_dict(), "created": result.created}


def _push_evidence(
    body: PushRequest, workdir: Path
) -> tuple[Path | None, Any, Path | None, list[Any]]:
    """The uploader's signature and provenance of a push, written beside (never inside) the
    bundle's private folder, with the keys sent to check them: what the embedded CLI reads
    from `--signature/--public-key` and `--provenance/--provenance-key`."""
    import base64
    import binascii
    import json

    from modelward.signing.keys import Verifier, public_key_from_pem

    verifier = None
    if body.public_key is not None:
        verifier = Verifier(public_key_from_pem(body.public_key.encode("utf-8"), "public_key"))
    signature_path = None
    if body.signature is not None:
        signature_path = workdir / "uploader.sig"
        signature_path.write_text(json.dumps(body.signature))
    keys = [verifier] if verifier is not None else []
    if body.provenance_key is not None:
        key = public_key_from_pem(body.provenance_key.encode("utf-8"), "provenance_key")
        keys.append(Verifier(key))
    provenance_path = None
    if body.provenance is not None:
        try:
            document = base64.b64decode(body.provenance, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"provenance must be base64: {exc}") from exc
        provenance_path = workdir / "provenance.json"
        provenance_path.write_bytes(document)
    return signature_path, verifier, provenance_path, keys
