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


GRANTS_SETTING = "roles.grants"
MAX_GRANTS = 1000


@dataclass(frozen=True)
class Grant:
    """A role a user holds on the models whose names match `models` (an fnmatch pattern), on
    top of their registry-wide role."""

    user: str
    role: Role
    models: str

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "role": self.role.value, "models": self.models}

    def covers(self, model: str) -> bool:
        from fnmatch import fnmatchcase

        return fnmatchcase(model, self.models)


def validate_model_pattern(pattern: str) -> str:
    if (
        not isinstance(pattern, str)
        or not pattern.strip()
        or len(pattern) > 200
        or "/" in pattern
        or any(ord(c) < 32 for c in pattern)
    ):
        raise InputError(
            f"model pattern {pattern!r} must be a model name or a pattern such as 'team-a-*'"
        )
    return pattern.strip()


def parse_grants(value: Any) -> list[Grant]:
    if not isinstance(value, list) or len(value) > MAX_GRANTS:
        raise InputError(f"{GRANTS_SETTING} must be a list of at most {MAX_GRANTS} grants")
    grants = []
    for entry in value:
        if not isinstance(entry, dict) or set(entry) != {"user", "role", "models"}:
            raise InputError(f"{GRANTS_SETTING}: each grant is {{user, role, models}}")
        grants.append(
            Grant(
                validate_name(str(entry["user"]), "user name"),
                _parse_role(str(entry["role"])),
                validate_model_pattern(str(entry["models"])),
            )
        )
    return grants


def trusted_grants(conn: Connection) -> tuple[list[Grant], str | None]:
    """(the model-scoped role grants, None) as the ledger-checked setting holds them; ([],
    problem) when the setting fails its check: grants only widen, so ignoring them fails
    closed."""
    from modelward.errors import ModelwardError
    from modelward.services.settings import verified_value

    try:
        return parse_grants(verified_value(conn, GRANTS_SETTING, [])), None
    except ModelwardError as exc:
        return [], f"the model-scoped role grants are not trusted ({exc})"


def allowed_role(
    conn: Connection,
    actor: str,
    action: Action,
    table: PermissionTable = DEFAULT_PERMISSIONS,
    *,
    model: str | None = None,
    any_model: bool = False,
) -> Role:
    """The role that allows `actor` to take `action`: their registry-wide role, or, on `model`
    (or, with `any_model`, on some model: for a request whose model is checked later), a role
    granted to them on models matching it. PermissionDeniedError otherwise."""
    role = role_of(conn, actor)
    if table.allows([role.value], action):
        return role
    problem = None
    granted: list[Role] = []
    if model is not None or any_model:
        grants, problem = trusted_grants(conn)
        granted = [
            g.role
            for g in grants
            if g.user == actor and (any_model or (model is not None and g.covers(model)))
        ]
    for candidate in granted:
        if table.allows([candidate.value], action):
            return candidate
    try:
        check([role, *granted], action, table, actor=actor)
    except PermissionDeniedError as exc:
        if problem is not None:
            raise PermissionDeniedError(f"{exc} ({problem})") from None
        raise
    return role  # pragma: no cover - check() raised above


def require(
    conn: Connection,
    actor: str,
    action: Action,
    table: PermissionTable = DEFAULT_PERMISSIONS,
    *,
    model: str | None = None,
) -> Role:
    """Refuse (PermissionDeniedError) unless `actor` is a user whose role allows `action`, or,
    for an action on `model`, a role granted to them on models matching it does. Returns the
    role that allowed it (the registry-wide one when it does)."""
    role = allowed_role(conn, actor, action, table, model=model)
    principal = bound_principal()
    if principal is not None:  # a token's scopes narrow its user's role, never widen it
        if principal.name != actor:
            raise PermissionDeniedError(
                f"authenticated as {principal.name!r}, the operation acts as {actor!r}"
            )
        principal.check_action(action.value)
        if model is not None:
            principal.check_model(model)
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

    def grant(self, name: str, role_name: str, models: str) -> list[Grant]:
        """Give `name` the role `role_name` on the models matching `models` (admin only;
        ledgered as the `roles.grants` setting). The user must exist."""
        return self._change_grants(name, role_name, models, add=True)

    def revoke_grant(self, name: str, role_name: str, models: str) -> list[Grant]:
        return self._change_grants(name, role_name, models, add=False)

    def grants(self) -> list[Grant]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            grants, problem = trusted_grants(conn)
        if problem is not None:
            from modelward.errors import VerificationError

            raise VerificationError(problem)
        return grants

    def _change_grants(self, name: str, role_name: str, models: str, *, add: bool) -> list[Grant]:
        from modelward.errors import NotFoundError, VerificationError
        from modelward.services.settings import set_in

        validate_name(name, "user name")
        wanted = Grant(name, _parse_role(role_name), validate_model_pattern(models))
        if wanted.role is Role.ADMIN:
            raise InputError("admin is a registry-wide role; it cannot be granted on models")
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            require(conn, self.actor, Action.ADD_USER, load_gate_config(self.ctx).permissions)
            current, problem = trusted_grants(conn)
            if problem is not None:
                raise VerificationError(f"{problem}; fix that before changing them")
            if add:
                role, user_problem = trusted_role(conn, name)
                if user_problem is not None or role is None:
                    raise NotFoundError(
                        user_problem or f"{name!r} is not a user of this registry; add them first"
                    )
                if wanted in current:
                    raise InputError(f"{name!r} already has {wanted.role.value} on {models!r}")
                updated = [*current, wanted]
            else:
                if wanted not in current:
                    raise NotFoundError(f"{name!r} has no {wanted.role.value} grant on {models!r}")
                updated = [g for g in current if g != wanted]
            set_in(conn, self.actor, GRANTS_SETTING, [g.to_dict() for g in updated], now=now)
        return updated

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
            grants, _ = trusted_grants(conn) if role else ([], None)
        permissions = load_gate_config(self.ctx).permissions
        may = sorted(a.value for a in Action if permissions.allows([role], a)) if role else []
        return {
            "actor": self.actor,
            "role": role,
            "known": role is not None,
            "may": may,
            "grants": [
                {"role": g.role.value, "models": g.models} for g in grants if g.user == self.actor
            ],
        }
