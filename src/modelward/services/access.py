"""Authorisation of an authenticated principal, for every request the server serves, reads
included: the user's role (from the registry, per the permission table), then the token's
scopes and model pattern, which only narrow it. The services check their own writes again
(`users.require`, which also applies the bound principal's scopes).
"""

from __future__ import annotations

from modelward.core.principal import Principal
from modelward.core.roles import Action
from modelward.errors import PermissionDeniedError
from modelward.services.context import RegistryContext


def authorise(
    context: RegistryContext,
    principal: Principal,
    action: Action,
    model: str | None = None,
    *,
    checked_later: bool = False,
) -> None:
    """Refuse unless the principal's role allows `action` and its token's scopes and model
    pattern allow it too. `model=None` marks a registry-wide request, which model-limited
    tokens may not make, unless `checked_later` (the endpoint checks the model once it has
    resolved it, or filters by it). Services check their own writes again."""
    from modelward.services.gate_config import load_gate_config
    from modelward.services.users import allowed_role

    with context.database.read() as conn:
        allowed_role(
            conn,
            principal.name,
            action,
            load_gate_config(context).permissions,
            model=model,
            any_model=model is None and checked_later,
        )
    principal.check_action(action.value)
    if model is not None:
        principal.check_model(model)
    elif principal.model_pattern is not None and not checked_later:
        raise PermissionDeniedError(
            f"this token of {principal.name!r} is limited to models matching "
            f"{principal.model_pattern!r}; it may not read registry-wide records"
        )


def permitted(
    context: RegistryContext,
    principal: Principal,
    actions: tuple[Action, ...],
    model: str | None = None,
) -> tuple[str | None, frozenset[Action]]:
    """(the principal's role, the subset of `actions` it may take on `model`): what decides
    which buttons a page shows, with one role read and one settings read. A principal the
    registry does not trust has no role and may take none. The services check again."""
    from modelward.errors import ModelwardError
    from modelward.services.gate_config import load_gate_config
    from modelward.services.users import role_of, trusted_grants

    try:
        with context.database.read() as conn:
            role = role_of(conn, principal.name)
            # roles granted on models matching `model` count too (`users grant`)
            granted = []
            if model is not None:
                grants, _ = trusted_grants(conn)
                granted = [
                    g.role.value for g in grants if g.user == principal.name and g.covers(model)
                ]
        table = load_gate_config(context).permissions
    except ModelwardError:
        return None, frozenset()
    if model is not None and not principal.allows_model(model):
        return str(role), frozenset()
    roles = [role.value, *granted]
    return str(role), frozenset(
        a for a in actions if table.allows(roles, a) and principal.allows_action(a.value)
    )
