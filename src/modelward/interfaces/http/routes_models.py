"""Reading the registry over HTTP: the registry's public keys, models, versions, resolve, show,
and pulling a version (its manifest, the registry's OMS signature, and each file by digest).

Every endpoint authenticates, checks `view` (role, token scope, model pattern), calls one
service method, and returns its result as JSON. The private keys never leave the server.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError, NotFoundError, PermissionDeniedError
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(tags=["models"])


@router.get("/registry")
def registry_info(registry: ServerRegistry = Registry) -> dict[str, Any]:
    """The registry's origin and public keys (no authentication: clients pin them)."""
    from cryptography.hazmat.primitives import serialization

    from modelward.signing.keys import key_hint

    ctx = registry.ctx
    public = ctx.signer.public_key
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode("ascii")
    ledger = ctx.ledger_key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return {
        "origin": ctx.origin,
        "registry_key_id": key_hint(public),
        "registry_public_key": pem,
        "ledger_public_key": ledger.hex(),
    }


@router.get("/whoami")
def whoami(principal: Principal = Caller, registry: ServerRegistry = Registry) -> dict[str, Any]:
    with bind_principal(principal):
        data = registry.users(principal).whoami()
    return {**data, "principal": principal.to_dict()}


@router.get("/models")
def list_models(
    principal: Principal = Caller, registry: ServerRegistry = Registry
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        rows = registry.registry(principal).list_models()
    return [row for row in rows if principal.allows_model(str(row["name"]))]


@router.get("/models/{name}/versions")
def list_versions(
    name: str, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        return registry.registry(principal).list_versions(name)


@router.get("/resolve")
def resolve(
    uri: str = Query(..., max_length=400),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    check_named_model(principal, uri)  # before resolving: no existence oracle outside the pattern
    with absent_unless_visible(uri), bind_principal(principal):
        record = registry.registry(principal).resolve(uri)
        authorise(registry.ctx, principal, Action.VIEW, model=record.model)
    return record.to_dict()


@router.get("/show")
def show(
    uri: str = Query(..., max_length=400),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    check_named_model(principal, uri)
    with absent_unless_visible(uri), bind_principal(principal):
        service = registry.registry(principal)
        authorise(registry.ctx, principal, Action.VIEW, model=service.resolve(uri).model)
        return service.show(uri)


@router.get("/models/{name}/versions/{number}/bundle")
def bundle(
    name: str, number: int, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    """What a client needs to verify a pull: the manifest and the registry's OMS signature."""
    import json

    from modelward.services.registry import REGISTRY_SIGNATURE

    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        service = registry.registry(principal)
        record = service.resolve(f"models:/{name}/{_number(number)}")
        signatures = service.attestations(record, REGISTRY_SIGNATURE)
    if not signatures:
        raise NotFoundError(f"{record.uri}: the registry signature is missing")
    return {
        "version": record.to_dict(),
        "manifest": json.loads(record.manifest_json),
        "registry_signature": json.loads(signatures[0].document),
    }


@router.get("/models/{name}/versions/{number}/files/{digest}")
def download(
    name: str,
    number: int,
    digest: str,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> StreamingResponse:
    """One file of the version, by digest; the store re-hashes while reading and the stream
    breaks off on a mismatch (the client hashes again in any case)."""
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        record = registry.registry(principal).resolve(f"models:/{name}/{_number(number)}")
    if digest not in {entry.digest for entry in record.manifest().files}:
        raise NotFoundError(f"{record.uri} has no file with digest {digest}")
    blobs = registry.ctx.blobs
    size = blobs.size(digest)
    chunks: Iterator[bytes] = blobs.read_chunks(digest)
    return StreamingResponse(
        chunks,
        media_type="application/octet-stream",
        headers={"content-length": str(size)},
    )


def _number(number: int) -> int:
    if number < 1:
        raise InputError(f"{number} is not a version number (1, 2, …)")
    return number


@contextlib.contextmanager
def absent_unless_visible(uri: str) -> Iterator[None]:
    """A URI that names no model (`sha256:<root>`) resolving to a version the caller may not
    view is "not found" to them, not "forbidden": the answer tells nothing of which model holds
    it, or that it exists."""
    from modelward.core.names import parse_uri

    try:
        yield
    except PermissionDeniedError:
        try:
            named = parse_uri(uri).name is not None
        except InputError:
            named = True
        if named:
            raise
        raise NotFoundError(f"{uri}: no such version") from None


def check_named_model(principal: Principal, uri: str) -> None:
    """Refuse a model-limited caller a URI naming a model outside its pattern before anything
    is looked up, so the answer says nothing of what exists there."""
    from modelward.core.names import parse_uri

    name = parse_uri(uri).name
    if name is not None:
        principal.check_model(name)
