"""Roles: the permission matrix, configurable override roles, and no self-approval."""

from __future__ import annotations

import pytest

from modelward.core.roles import (
    DEFAULT_PERMISSIONS,
    Action,
    PermissionTable,
    Role,
    check,
    check_approval,
    parse_role,
)
from modelward.errors import InputError, PermissionDeniedError

A = Action
EXPECTED = {
    Role.ADMIN: set(Action),
    Role.TRAINER: {A.PUSH, A.ATTACH_PROVENANCE, A.VIEW},
    Role.REVIEWER: {A.APPROVE, A.VIEW},
    Role.RELEASER: {A.PROMOTE, A.ROLLBACK, A.OVERRIDE, A.VIEW, A.TELEMETRY_WRITE},
    Role.AUDITOR: {A.VIEW},
    Role.VIEWER: {A.VIEW},
}


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("action", list(Action))
def test_permission_matrix(role: Role, action: Action) -> None:
    if action in EXPECTED[role]:
        check([role], action)
    else:
        with pytest.raises(PermissionDeniedError):
            check([role], action)


def test_denial_message_names_actor_action_and_needed_roles() -> None:
    with pytest.raises(PermissionDeniedError) as caught:
        check(["trainer"], Action.PROMOTE, actor="tom")
    assert str(caught.value) == (
        "'tom' (with roles trainer) may not promote a version; this needs one of: admin, releaser"
    )
    with pytest.raises(PermissionDeniedError, match="with no roles"):
        check([], Action.VIEW)


def test_any_role_of_several_suffices() -> None:
    check(["viewer", "reviewer"], Action.APPROVE)


def test_override_roles_are_configurable() -> None:
    admin_only = DEFAULT_PERMISSIONS.with_roles_for(Action.OVERRIDE, ["admin"])
    check(["admin"], Action.OVERRIDE, admin_only)
    with pytest.raises(PermissionDeniedError, match="override a gate decision"):
        check(["releaser"], Action.OVERRIDE, admin_only)
    check(["releaser"], Action.PROMOTE, admin_only)
    assert PermissionTable.from_dict(admin_only.to_dict()) == admin_only
    with pytest.raises(InputError, match="at least one role"):
        DEFAULT_PERMISSIONS.with_roles_for(Action.OVERRIDE, [])


def test_unknown_roles_and_actions_are_input_errors() -> None:
    with pytest.raises(InputError, match="unknown role 'root'"):
        parse_role("root")
    with pytest.raises(InputError, match="unknown role"):
        check(["root"], Action.VIEW)
    with pytest.raises(InputError, match="not one string"):
        check("admin", Action.VIEW)
    with pytest.raises(InputError, match="unknown action 'deploy'"):
        PermissionTable.from_dict({"deploy": ["admin"]})
    with pytest.raises(InputError, match="no entry for"):
        PermissionTable({Action.VIEW: frozenset({Role.ADMIN})})


def test_self_approval_is_refused() -> None:
    check_approval("bob", "alice")
    with pytest.raises(PermissionDeniedError, match="'alice' is the author of this version"):
        check_approval("alice", "alice")
    with pytest.raises(PermissionDeniedError, match="no recorded author"):
        check_approval("bob", None)
