"""Users over HTTP: list (view) and add or change a role (admin, checked by the service)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.interfaces.http.server import Caller, Registry
from modelward.services.access import authorise

router = APIRouter(prefix="/users", tags=["users"])


class AddUserRequest(BaseModel):
    name: str = Field(max_length=200)
    role: str = Field(max_length=40)


@router.get("")
def list_users(
    principal: Principal = Caller, registry: ServerRegistry = Registry
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        return [user.to_dict() for user in registry.users(principal).list()]


@router.post("", status_code=201)
def add_user(
    body: AddUserRequest, principal: Principal = Caller, registry: ServerRegistry = Registry
) -> dict[str, Any]:
    authorise(registry.ctx, principal, Action.ADD_USER)
    with bind_principal(principal):
        return registry.users(principal).add(body.name, body.role).to_dict()
