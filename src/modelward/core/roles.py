"""Roles and permissions: who may push, approve, promote, roll back, override or set policies.

A `PermissionTable` maps each `Action` to the roles allowed to take it; `DEFAULT_PERMISSIONS` is
the separation of duties modelward ships with (a trainer pushes but cannot approve or promote; a
releaser promotes and rolls back; only an admin sets policies). `check` raises
PermissionDeniedError naming the actor, the action and the roles that would allow it;
`check_approval` refuses self-approval. Users and their roles are stored elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from types import MappingProxyType
from typing import Any

from modelward.errors import InputError, PermissionDeniedError


class Role(StrEnum):
    ADMIN = "admin"
    TRAINER = "trainer"
    REVIEWER = "reviewer"
    RELEASER = "releaser"
    AUDITOR = "auditor"
    VIEWER = "viewer"


class Action(StrEnum):
    PUSH = "push"
    ATTACH_PROVENANCE = "attach-provenance"
    APPROVE = "approve"
    PROMOTE = "promote"
    ROLLBACK = "rollback"
    OVERRIDE = "override"
    SET_POLICY = "set-policy"
    ADD_USER = "add-user"
    VIEW = "view"
    TELEMETRY_WRITE = "telemetry.write"


_DESCRIPTIONS = {
    Action.PUSH: "push a model version",
    Action.ATTACH_PROVENANCE: "attach provenance",
    Action.APPROVE: "approve a version",
    Action.PROMOTE: "promote a version",
    Action.ROLLBACK: "roll back or run a rollback drill",
    Action.OVERRIDE: "override a gate decision",
    Action.SET_POLICY: "set an environment policy",
    Action.ADD_USER: "add users or change roles",
    Action.VIEW: "view the registry",
    Action.TELEMETRY_WRITE: "send serving telemetry",
}

_ALL_ROLES = frozenset(Role)


@dataclass(frozen=True)
class PermissionTable:
    """Which roles may take each action. Build variants with `with_roles_for`."""

    grants: Mapping[Action, frozenset[Role]]

    def __post_init__(self) -> None:
        missing = [action.value for action in Action if action not in self.grants]
        if missing:
            raise InputError(f"the permission table has no entry for {', '.join(missing)}")
        object.__setattr__(self, "grants", MappingProxyType(dict(self.grants)))

    def roles_for(self, action: Action) -> frozenset[Role]:
        return self.grants[action]

    def allows(self, roles: Iterable[Role | str], action: Action) -> bool:
        allowed = self.grants[action]
        return any(role in allowed for role in _roles(roles))

    def with_roles_for(self, action: Action, roles: Iterable[Role | str]) -> PermissionTable:
        """A copy where `action` is allowed to exactly `roles` (e.g. override by admin only)."""
        chosen = frozenset(_roles(roles))
        if not chosen:
            raise InputError(f"at least one role must be allowed to {_DESCRIPTIONS[action]}")
        return PermissionTable({**self.grants, action: chosen})

    def to_dict(self) -> dict[str, list[str]]:
        return {
            action.value: sorted(role.value for role in self.grants[action]) for action in Action
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PermissionTable:
        grants = {}
        for key, roles in data.items():
            action = parse_action(key)
            if not isinstance(roles, (list, tuple)):
                raise InputError(f"roles for {key!r} must be a list")
            grants[action] = frozenset(_roles(roles))
        return cls(grants)


DEFAULT_PERMISSIONS = PermissionTable(
    {
        Action.PUSH: frozenset({Role.ADMIN, Role.TRAINER}),
        Action.ATTACH_PROVENANCE: frozenset({Role.ADMIN, Role.TRAINER}),
        Action.APPROVE: frozenset({Role.ADMIN, Role.REVIEWER}),
        Action.PROMOTE: frozenset({Role.ADMIN, Role.RELEASER}),
        Action.ROLLBACK: frozenset({Role.ADMIN, Role.RELEASER}),
        Action.OVERRIDE: frozenset({Role.ADMIN, Role.RELEASER}),
        Action.SET_POLICY: frozenset({Role.ADMIN}),
        Action.ADD_USER: frozenset({Role.ADMIN}),
        Action.VIEW: _ALL_ROLES,
        # telemetry feeds canary judgement and rollbacks: those who release may report on it
        Action.TELEMETRY_WRITE: frozenset({Role.ADMIN, Role.RELEASER}),
    }
)


def parse_role(name: str) -> Role:
    """The role called `name`; InputError listing the known roles otherwise."""
    try:
        return Role(name)
    except ValueError:
        known = ", ".join(role.value for role in Role)
        raise InputError(f"unknown role {name!r}; roles are {known}") from None


def parse_action(name: str) -> Action:
    try:
        return Action(name)
    except ValueError:
        known = ", ".join(action.value for action in Action)
        raise InputError(f"unknown action {name!r}; actions are {known}") from None


def check(
    actor_roles: Iterable[Role | str],
    action: Action,
    table: PermissionTable = DEFAULT_PERMISSIONS,
    actor: str = "",
) -> None:
    """Raise PermissionDeniedError unless one of `actor_roles` may take `action`."""
    roles = sorted(role.value for role in _roles(actor_roles))
    if table.allows(roles, action):
        return
    who = f"{actor!r}" if actor else "the actor"
    having = f"roles {', '.join(roles)}" if roles else "no roles"
    needed = ", ".join(sorted(role.value for role in table.roles_for(action)))
    raise PermissionDeniedError(
        f"{who} (with {having}) may not {_DESCRIPTIONS[action]}; this needs one of: {needed}"
    )


def check_approval(approver: str, author: str | None) -> None:
    """Refuse self-approval, and approval of a version whose author is unknown."""
    if not approver:
        raise PermissionDeniedError("an approval needs a named approver")
    if not author:
        raise PermissionDeniedError(
            "the version has no recorded author, so independent approval cannot be shown"
        )
    if approver == author:
        raise PermissionDeniedError(
            f"{approver!r} is the author of this version and may not approve it"
        )


def _roles(roles: Iterable[Role | str]) -> list[Role]:
    if isinstance(roles, str):
        raise InputError("roles must be a list of role names, not one string")
    return [role if isinstance(role, Role) else parse_role(role) for role in roles]
