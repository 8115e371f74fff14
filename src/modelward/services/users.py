"""Users and roles: who the registry knows, what each may do, and adding users.

`require` is the one authorisation check every service calls inside its unit of work: an actor
the registry does not know is refused with a hint on how to add them, and a known actor whose
role does not allow the action is refused naming the roles that would. The role is read only
from a users row that checks out against its sealed ledger event (`state_integrity`); a row
inserted or edited behind modelward's back is refused. The actor who ran
`modelward init` is the first admin.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.names import validate_name
from modelward.core.principal import bound_principal
from modelward.core.roles import DEFAULT_PERMISSIONS, Action, PermissionTable, Role, check
from modelward.core.roles import parse_role as _parse_role
from modelward.errors import InputError, PermissionDeniedError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.gate_config import load_gate_config
from modelward.services.state_integrity import anchored_append, trusted_role
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.gate_repository import GateRepository
from modelward.storage.metadata.ledger_repository import format_time
from modelward.storage.metadata.registry_repository import RegistryRepository


def unknown_actor_error(actor: str) -> PermissionDeniedError:
    return PermissionDeniedError(
        f"actor {actor!r} is not a user of this registry; an admin can add them with "
        f"`modelward users add {actor} --role trainer`"
    )


def role_of(conn: Connection, actor: str) -> Role:
    """The actor's role; PermissionDeniedError when the registry does not know them, or when
    their users row fails its ledger check (it is then treated as absent: verify before trust)."""
    role, problem = trusted_role(conn, actor)
    if problem is not None:
        raise PermissionDeniedError(
            f"actor {actor!r} is refused: {problem}; the row is treated as absent "
            "(`modelward audit verify` lists what changed)"
        )
    if role is None:
        raise unknown_actor_error(actor)
    return _parse_role(role)


def require(
    conn: Connection, actor: str, action: Action, table: PermissionTable = DEFAULT_PERMISSIONS
) -> Role:
    """Refuse (PermissionDeniedError) unless `actor` is a user whose role allows `action`."""
    role = role_of(conn, actor)
    check([role], action, table, actor=actor)
    principal = bound_principal()
    if principal is not None:  # a token's scopes narrow its user's role, never widen it
        if principal.name != actor:
            raise PermissionDeniedError(
                f"authenticated as {principal.name!r}, the operation acts as {actor!r}"
            )
        principal.check_action(action.value)
    return role


@dataclass(frozen=True)
class UserInfo:
    name: str
    role: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "role": self.role}


class UserService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def add(self, name: str, role_name: str) -> UserInfo:
        """Add a user, or change an existing user's role (admin only); ledgered."""
        validate_name(name, "user name")
        role = _parse_role(role_name)
        permissions = load_gate_config(self.ctx).permissions
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            require(conn, self.actor, Action.ADD_USER, permissions)
            repo = RegistryRepository(conn)
            existing = repo.user_role(name)
            if existing == role.value:
                raise InputError(f"{name!r} already has the role {role.value}")
            if existing is not None and name == self.actor and existing == Role.ADMIN.value:
                raise InputError("an admin cannot take away their own admin role")
            if existing is None:
                repo.add_user(name, role.value, format_time(now), self.actor)
            else:
                GateRepository(conn).set_user_role(name, role.value)
            anchored_append(
                conn,
                self.actor,
                "user.add" if existing is None else "user.role",
                f"user:{name}",
                {"user": name, "role": role.value, "previous_role": existing},
                now,
                rows=[("users", name)],
            )
        return UserInfo(name, role.value)

    def list(self) -> list[UserInfo]:
        """The users (needs the `view` role); a row that fails its ledger check is listed with
        the role `untrusted`, never with the role it claims."""
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            users = []
            for name, role in RegistryRepository(conn).list_users():
                trusted, _problem = trusted_role(conn, name)
                users.append(UserInfo(name, role if trusted == role else "untrusted"))
            return users

    def whoami(self) -> dict[str, Any]:
        with self.ctx.database.read() as conn:
            role, _problem = trusted_role(conn, self.actor)
        permissions = load_gate_config(self.ctx).permissions
        may = sorted(a.value for a in Action if permissions.allows([role], a)) if role else []
        return {"actor": self.actor, "role": role, "known": role is not None, "may": may}
