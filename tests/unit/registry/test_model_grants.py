"""Roles on models matching a pattern, on top of the registry-wide role: granted by admins only,
kept as ledgered registry state, checked in the services, ignored (fail closed) when tampered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelward.errors import InputError, NotFoundError, PermissionDeniedError
from modelward.services.gate import GateService
from modelward.services.settings import settings_state_checks
from modelward.services.users import UserService

from .bundles import make_bundle
from .conftest import ACTOR, Registry


@pytest.fixture
def pushed(registry: Registry, tmp_path: Path) -> Registry:
    users = UserService(registry.context, ACTOR)
    users.add("bob", "trainer")
    registry.service.push(make_bundle(tmp_path / "a", seed=1), "team-a-llama")
    registry.service.push(make_bundle(tmp_path / "b", seed=2), "team-b-llama")
    return registry


def test_a_grant_allows_its_role_on_matching_models_only(pushed: Registry) -> None:
    UserService(pushed.context, ACTOR).grant("bob", "reviewer", "team-a-*")
    bob = GateService(pushed.context, "bob")
    bob.approve("models:/team-a-llama/1", "staging")
    with pytest.raises(PermissionDeniedError, match="may not approve"):
        bob.approve("models:/team-b-llama/1", "staging")
    assert UserService(pushed.context, "bob").whoami()["grants"] == [
        {"role": "reviewer", "models": "team-a-*"}
    ]


def test_a_revoked_grant_allows_nothing(pushed: Registry) -> None:
    admin = UserService(pushed.context, ACTOR)
    admin.grant("bob", "reviewer", "team-a-*")
    assert admin.revoke_grant("bob", "reviewer", "team-a-*") == []
    with pytest.raises(PermissionDeniedError):
        GateService(pushed.context, "bob").approve("models:/team-a-llama/1", "staging")
    with pytest.raises(NotFoundError):
        admin.revoke_grant("bob", "reviewer", "team-a-*")


def test_only_admins_grant_and_admin_is_never_granted(pushed: Registry) -> None:
    with pytest.raises(PermissionDeniedError):
        UserService(pushed.context, "bob").grant("bob", "releaser", "*")
    with pytest.raises(InputError, match="registry-wide"):
        UserService(pushed.context, ACTOR).grant("bob", "admin", "team-a-*")
    with pytest.raises(NotFoundError):
        UserService(pushed.context, ACTOR).grant("carol", "reviewer", "team-a-*")
    with pytest.raises(InputError, match="pattern"):
        UserService(pushed.context, ACTOR).grant("bob", "reviewer", "team/a")


def test_a_grant_written_behind_the_registrys_back_allows_nothing(pushed: Registry) -> None:
    UserService(pushed.context, ACTOR).grant("bob", "reviewer", "team-a-*")
    [(row_id, value)] = pushed.sql(
        "SELECT id, value FROM registry_settings WHERE key = 'roles.grants'"
    )
    widened = json.loads(value)
    widened[0]["models"] = "*"
    pushed.sql(
        "UPDATE registry_settings SET value = ? WHERE id = ?",
        (json.dumps(widened, separators=(",", ":")), row_id),
    )
    with pytest.raises(PermissionDeniedError, match="grants are not trusted"):
        GateService(pushed.context, "bob").approve("models:/team-b-llama/1", "staging")
    with pytest.raises(PermissionDeniedError):
        GateService(pushed.context, "bob").approve("models:/team-a-llama/1", "staging")
    with pushed.context.database.read() as conn:
        assert any("roles.grants" in p for p in settings_state_checks(conn))
