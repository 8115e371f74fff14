"""The release gate's configuration: the `[gate]` table of `$MODELWARD_HOME/modelward.toml`.

    [gate]
    environments = ["staging", "canary", "production"]   # the promotion path, in order
    override_roles = ["admin", "releaser"]                # who may break glass
    max_override = "7d"                                   # the longest override expiry allowed

Reads the file with `tomllib`; a missing file or table means the defaults. Stores nothing.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from modelward.core.release import DEFAULT_ENVIRONMENTS, EnvironmentPath
from modelward.core.roles import DEFAULT_PERMISSIONS, Action, PermissionTable, parse_role
from modelward.errors import InputError

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


def load_gate_config(home: Path) -> GateConfig:
    """The `[gate]` settings of the registry at `home` (defaults where absent)."""
    file = home / CONFIG_FILE
    section: dict[str, Any] = {}
    if file.is_file():
        try:
            section = tomllib.loads(file.read_text(encoding="utf-8")).get("gate", {})
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
            raise InputError(f"{file}: cannot read the configuration: {exc}") from exc
        if not isinstance(section, dict):
            raise InputError(f"{file}: [gate] must be a table")
    environments = section.get("environments", list(DEFAULT_ENVIRONMENTS))
    if not isinstance(environments, list):
        raise InputError(f"{file}: [gate] environments must be a list of names")
    path = EnvironmentPath(tuple(environments))
    permissions = DEFAULT_PERMISSIONS
    override_roles = section.get("override_roles")
    if override_roles is not None:
        if not isinstance(override_roles, list):
            raise InputError(f"{file}: [gate] override_roles must be a list of roles")
        permissions = permissions.with_roles_for(
            Action.OVERRIDE, [parse_role(str(r)) for r in override_roles]
        )
    max_override = parse_duration(str(section.get("max_override", "7d")), "max_override")
    return GateConfig(path=path, permissions=permissions, max_override=max_override)
