"""The gate and releases over HTTP: approve, promote (the decision, and the release on allow),
decisions, releases of an environment, rollback. Each endpoint authenticates, authorises,
calls one service method with the principal bound, and returns its result.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import InputError
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise
from modelward.services.push_orders import PUSH_FOLDER_PREFIX

router = APIRouter(tags=["gate"])


class ApproveRequest(BaseModel):
    uri: str = Field(max_length=400)
    environment: str = Field(max_length=100)
    comment: str = Field(default="", max_length=4096)
    sign_off: bool = False


class AttachedFile(BaseModel):
    """A prompt template or policy file sent with a promotion: its file name, base64 bytes."""

    name: str = Field(min_length=1, max_length=255)
    content: str = Field(max_length=1024 * 1024)


class PromoteRequest(BaseModel):
    uri: str = Field(max_length=400)
    environment: str = Field(max_length=100)
    flags: dict[str, str | int | float | bool | None] = Field(default_factory=dict, max_length=200)
    flag_texts: list[str] = Field(default_factory=list, max_length=200)  # KEY=VALUE, as the CLI
    risk_tier: str | None = Field(default=None, max_length=20)
    if_current: str | None = Field(default=None, max_length=100)
    carry: bool = True
    prompt_templates: list[AttachedFile] | None = Field(default=None, max_length=50)
    policy_files: list[AttachedFile] | None = Field(default=None, max_length=50)


class DrillRequest(BaseModel):
    environment: str = Field(max_length=100)


class RollbackRequest(BaseModel):
    environment: str = Field(max_length=100)
    to: str | None = Field(default=None, max_length=100)


def _model_of(registry: ServerRegistry, principal: Principal, uri: str) -> str:
    from modelward.interfaces.http.routes_models import check_named_model

    check_named_model(principal, uri)
    with bind_principal(principal):
        return registry.registry(principal).resolve(uri).model


@router.post("/approvals")
def approve(
    body: ApproveRequest, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.APPROVE, checked_later=True)
    principal.check_model(_model_of(registry, principal, body.uri))
    with bind_principal(principal):
        return registry.gate(principal).approve(
            body.uri, body.environment, comment=body.comment, sign_off=body.sign_off
        )


@router.post("/promotions")
def promote(
    body: PromoteRequest, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    """The decision and, when allowed, the release; a deny is a 200 with `allowed: false`."""
    authorise(registry.ctx, principal, Action.PROMOTE, checked_later=True)
    principal.check_model(_model_of(registry, principal, body.uri))
    from modelward.services.gate import parse_flag

    flags = {**body.flags, **dict(parse_flag(text) for text in body.flag_texts)}
    kwargs: dict[str, Any] = {}
    if body.if_current is not None:
        kwargs["expected_release_id"] = None if body.if_current == "none" else body.if_current
    workdir = Path(tempfile.mkdtemp(prefix=PUSH_FOLDER_PREFIX, dir=registry.settings.spool_dir))
    try:
        templates = _attached(body.prompt_templates, workdir / "templates", "prompt template")
        policies = _attached(body.policy_files, workdir / "policies", "policy file")
        with bind_principal(principal):
            result = registry.gate(principal).promote(
                body.uri,
                body.environment,
                flags=flags,
                prompt_templates=templates,
                policy_files=policies,
                risk_tier=body.risk_tier,
                carry=body.carry,
                **kwargs,
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result.to_dict()


def _attached(files: list[AttachedFile] | None, folder: Path, what: str) -> list[Path] | None:
    """The attached files written under their names into a private folder (the service scans
    and stores them from there); None when none were sent (the source's are carried)."""
    import base64
    import binascii

    from modelward.services.push_orders import safe_relative_path

    if files is None:
        return None
    folder.mkdir()
    paths = []
    for attached in files:
        name = str(safe_relative_path(attached.name))
        if "/" in name:
            raise InputError(f"the {what} name {name!r} must be a file name, not a path")
        try:
            data = base64.b64decode(attached.content, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InputError(f"the {what} {name!r} is not base64: {exc}") from exc
        path = folder / name
        if path.exists():
            raise InputError(f"two {what}s are named {name!r}")
        path.write_bytes(data)
        paths.append(path)
    return paths


@router.get("/decisions")
def decisions(
    uri: str = Query(..., max_length=400),
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    principal.check_model(_model_of(registry, principal, uri))
    with bind_principal(principal):
        return registry.gate(principal).decisions(uri)


@router.get("/models/{name}/releases/{environment}")
def releases(
    name: str,
    environment: str,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        return registry.releases(principal).list(name, environment)


@router.post("/models/{name}/rollbacks")
def rollback(
    name: str,
    body: RollbackRequest,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.ROLLBACK, model=name)
    with bind_principal(principal):
        return registry.releases(principal).rollback(name, body.environment, body.to).to_dict()


@router.post("/models/{name}/drills")
def drill(
    name: str,
    body: DrillRequest,
    principal: Principal = Caller,
    registry: ServerRegistry = Registry,
) -> dict[str, Any]:
    """A rollback drill in the first environment: `passed` and its `steps`, as the CLI's."""
    authorise(registry.ctx, principal, Action.ROLLBACK, model=name)
    with bind_principal(principal):
        return registry.releases(principal).drill(name, body.environment)
