"""The release gate's configuration, read from the registry's settings (`services/settings`):

    gate.environments     the promotion path, in order (default staging, canary, production)
    gate.override_roles   who may break glass (default admin, releaser)
    gate.max_override     the longest override expiry allowed (default 7d)

These are registry state set by an admin with a ledgered `modelward settings set`, never read
from `modelward.toml`: `ignored_security_keys` names any such key still in that file so the CLI
can warn that it has no effect. Stores nothing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy.engine import Connection

from modelward.core.release import EnvironmentPath
from modelward.core.roles import DEFAULT_PERMISSIONS, Action, PermissionTable, parse_role
from modelward.errors import InputError

if TYPE_CHECKING:
    from modelward.services.context import RegistryContext

CONFIG_FILE = "modelward.toml"
_DURATION = re.compile(r"^\s*(\d{1,6})\s*([smhdw])\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@dataclass(frozen=True)
class GateConfig:
    path: EnvironmentPath
    permissions: PermissionTable
    max_override: timedelta

    @property
    def environments(self) -> tuple[str, ...]:
        return self.path.environments


def parse_duration(text: str, what: str = "duration") -> timedelta:
    """`30m`, `4h`, `2d`, `1w` → timedelta; InputError otherwise (zero is refused)."""
    match = _DURATION.match(text) if isinstance(text, str) else None
    if not match:
        raise InputError(
            f"{what} {text!r} is not a duration such as 30m, 4h, 2d or 1w "
            "(a positive number and one of s, m, h, d, w)"
        )
    amount = int(match.group(1))
    if amount == 0:
        raise InputError(f"{what} {text!r} is zero; it must be in the future")
    return timedelta(**{_UNITS[match.group(2)]: amount})


def load_gate_config(context: RegistryContext) -> GateConfig:
    """The gate settings of the registry, read (and checked) from its database."""
    with context.database.read() as conn:
        return gate_config_in(conn)


def gate_config_in(conn: Connection) -> GateConfig:
    """The gate settings inside an open unit of work (defaults where never set)."""
    from modelward.services.settings import setting_in

    path = EnvironmentPath(tuple(setting_in(conn, "gate.environments")))
    permissions = DEFAULT_PERMISSIONS.with_roles_for(
        Action.OVERRIDE, [parse_role(str(r)) for r in setting_in(conn, "gate.override_roles")]
    )
    max_override = parse_duration(str(setting_in(conn, "gate.max_override")), "max_override")
    return GateConfig(path=path, permissions=permissions, max_override=max_override)


# `modelward.toml` keys that used to hold security settings, and the setting that replaced each.
_SECURITY_KEYS = {
    ("scan", "allow"): "scan.allow",
    ("gate", "environments"): "gate.environments",
    ("gate", "override_roles"): "gate.override_roles",
    ("gate", "max_override"): "gate.max_override",
}


def ignored_security_keys(home: Path) -> list[str]:
    """Warnings for security keys still present in `home/modelward.toml` (which are ignored)."""
    file = home / CONFIG_FILE
    try:
        data = tomllib.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return []
    warnings = []
    for (table, key), setting in _SECURITY_KEYS.items():
        section = data.get(table)
        if isinstance(section, dict) and key in section:
            note = " (only the stand-alone `modelward scan` reads it)" if table == "scan" else ""
            warnings.append(
                f"{file}: [{table}] {key} is ignored by the registry{note}: security settings "
                f"are registry state; an admin sets it with `modelward settings set {setting} "
                "VALUE`"
            )
    return warnings
