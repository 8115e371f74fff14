"""Security settings as registry state: read, validate and (admin only, ledgered) change them.

Known keys (each with a shipped default used while it was never set):

    scan.allow           pickle globals allowed on top of the built-in list ("module:name", ...)
    gate.environments    the promotion path, in order
    gate.override_roles  the roles that may break glass
    gate.max_override    the longest override expiry allowed (a duration: 30m, 4h, 2d, 1w)
    probe.suites         digests (sha256:...) of probe suite files accepted by the gate on top
                         of the suites modelward ships

A value is stored as canonical JSON in `registry_settings` (insert-only; the newest row of a key
is current). `set` appends a `settings.set` ledger event in the same transaction, whose details
carry the anchor (row digest) of the new row; the row records that event's seq. Reading checks
the current row against its anchoring event: a row inserted or edited behind modelward's back is
reported and treated as absent, so the shipped default applies (fail closed). These settings
never come from `modelward.toml`. Does no rendering.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.anchors import Anchor, anchors_in, with_anchors
from modelward.core.canonical import canonical_json
from modelward.core.names import validate_name
from modelward.core.release import DEFAULT_ENVIRONMENTS, EnvironmentPath
from modelward.core.roles import Action, Role, parse_role
from modelward.errors import (
    InputError,
    ModelwardError,
    NotFoundError,
    PermissionDeniedError,
    VerificationError,
)
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.state_integrity import trusted_setting, verify_current
from modelward.services.users import require, role_of
from modelward.storage.metadata.database import serialize_ledger
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.settings_repository import SettingRow, SettingsRepository

SETTINGS_TABLE = "registry_settings"
SETTINGS_EVENT = "settings.set"


@dataclass(frozen=True)
class SettingSpec:
    key: str
    description: str
    default: Any
    validate: Callable[[Any], Any]  # JSON value -> normalised value; InputError if invalid
    is_list: bool = False


def _string_list(value: Any, key: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"setting {key} must be a list of strings")
    return [v.strip() for v in value]


def _scan_allow(value: Any) -> list[str]:
    from modelward.scanning import parse_global

    pairs = {parse_global(v) for v in _string_list(value, "scan.allow")}
    return [f"{module}:{name}" for module, name in sorted(pairs)]


def _environments(value: Any) -> list[str]:
    names = _string_list(value, "gate.environments")
    if not names:
        raise InputError("setting gate.environments must name at least one environment")
    for name in names:
        validate_name(name, "environment name")
    return list(EnvironmentPath(tuple(names)).environments)


def _override_roles(value: Any) -> list[str]:
    roles = sorted({parse_role(r).value for r in _string_list(value, "gate.override_roles")})
    if not roles:
        raise InputError("setting gate.override_roles must name at least one role")
    return roles


def _max_override(value: Any) -> str:
    from modelward.services.gate_config import parse_duration

    if not isinstance(value, str):
        raise InputError("setting gate.max_override must be a duration such as 30m, 4h, 2d, 1w")
    parse_duration(value, "gate.max_override")
    return value.strip()


def _suite_digests(value: Any) -> list[str]:
    digests = sorted({v.lower() for v in _string_list(value, "probe.suites")})
    for digest in digests:
        hexpart = digest.removeprefix("sha256:")
        if (
            not digest.startswith("sha256:")
            or len(hexpart) != 64
            or hexpart.strip("0123456789abcdef")
        ):
            raise InputError(
                f"setting probe.suites holds {digest!r}: each entry is a suite file's "
                "digest, sha256: and 64 hex digits"
            )
    return digests


SETTINGS: dict[str, SettingSpec] = {
    spec.key: spec
    for spec in (
        SettingSpec(
            "scan.allow",
            "pickle globals allowed on top of the built-in list (module:name)",
            [],
            _scan_allow,
            is_list=True,
        ),
        SettingSpec(
            "gate.environments",
            "the promotion path, in order",
            list(DEFAULT_ENVIRONMENTS),
            _environments,
            is_list=True,
        ),
        SettingSpec(
            "gate.override_roles",
            "the roles that may override a gate decision",
            ["admin", "releaser"],
            _override_roles,
            is_list=True,
        ),
        SettingSpec(
            "gate.max_override", "the longest override expiry allowed", "7d", _max_override
        ),
        SettingSpec(
            "probe.suites",
            "probe suite digests accepted on top of the shipped suites (sha256:...)",
            [],
            _suite_digests,
            is_list=True,
        ),
    )
}


def spec_of(key: str) -> SettingSpec:
    spec = SETTINGS.get(key)
    if spec is None:
        raise InputError(f"unknown setting {key!r}; settings are {', '.join(sorted(SETTINGS))}")
    return spec


def parse_setting_text(key: str, text: str) -> Any:
    """A value given on the command line: JSON, or for a list a comma-separated list."""
    spec = spec_of(key)
    try:
        value = json.loads(text)
    except ValueError:
        value = text
    if spec.is_list and isinstance(value, str):
        value = [part.strip() for part in value.split(",") if part.strip()]
    return spec.validate(value)


@dataclass(frozen=True)
class SettingView:
    key: str
    value: Any
    source: str  # "set", "default", or "untrusted" (a row that failed its ledger check)
    set_by: str | None
    set_at: str | None
    ledger_seq: int | None
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "source": self.source,
            "set_by": self.set_by,
            "set_at": self.set_at,
            "ledger_seq": self.ledger_seq,
            "problem": self.problem,
        }


def row_fields(row: SettingRow) -> dict[str, Any]:
    """The columns a setting row's anchor digest covers."""
    return {
        "key": row.key,
        "value": row.value,
        "created_at": row.created_at,
        "created_by": row.created_by,
    }


def row_anchor_problem(conn: Connection, row: SettingRow) -> str | None:
    """Why the row cannot be trusted (no anchoring ledger event, or a different digest)."""
    where = f"setting {row.key} (row {row.id})"
    if row.ledger_seq is None:
        return f"{where} has no ledger event"
    try:
        event = LedgerRepository(conn).event(row.ledger_seq)
    except (NotFoundError, ModelwardError):
        return f"{where}: its ledger event #{row.ledger_seq} is missing"
    expected = Anchor.of_row(SETTINGS_TABLE, str(row.id), row_fields(row))
    if event.action != SETTINGS_EVENT or expected not in anchors_in(event.details):
        return f"{where} does not match its ledger event #{row.ledger_seq}"
    return None


def view_in(conn: Connection, key: str) -> SettingView:
    """The current, checked value of `key` (the default if unset or untrusted)."""
    spec = spec_of(key)
    row = SettingsRepository(conn).latest(key)
    if row is None:
        try:
            trusted_setting(conn, key)  # refuses when rows the ledger anchored were deleted
        except VerificationError as exc:
            return SettingView(key, spec.default, "untrusted", None, None, None, str(exc))
        return SettingView(key, spec.default, "default", None, None, None)
    problem = row_anchor_problem(conn, row) or verify_current(
        conn, SETTINGS_TABLE, str(row.id), f"setting:{key}"
    )
    if problem is None:
        try:
            value = spec.validate(json.loads(row.value))
        except (ValueError, ModelwardError) as exc:
            problem = f"setting {key} (row {row.id}) holds an invalid value: {exc}"
    if problem is not None:
        return SettingView(
            key, spec.default, "untrusted", row.created_by, row.created_at, row.ledger_seq, problem
        )
    return SettingView(key, value, "set", row.created_by, row.created_at, row.ledger_seq)


def setting_in(conn: Connection, key: str) -> Any:
    """The current, checked value of `key`; for services that already checked their action."""
    return view_in(conn, key).value


def settings_state_checks(conn: Connection) -> list[str]:
    """Audit hook: every current setting row must match the ledger event that anchors it."""
    problems = []
    for row in SettingsRepository(conn).all_latest():
        problem = row_anchor_problem(conn, row)
        if problem is not None:
            problems.append(problem)
    return problems


class SettingsService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def get(self, key: str) -> SettingView:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return view_in(conn, key)

    def list(self) -> list[SettingView]:
        with self.ctx.database.read() as conn:
            require(conn, self.actor, Action.VIEW)
            return [view_in(conn, key) for key in sorted(SETTINGS)]

    def set(self, key: str, value: Any) -> SettingView:
        """Set `key` to `value` (a JSON value, validated for the key); admin only, ledgered."""
        spec = spec_of(key)
        normalised = spec.validate(value)
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            serialize_ledger(conn)  # decides on the state it changes
            previous = view_in(conn, key) if role_of(conn, self.actor) is Role.ADMIN else None
            record = set_in(
                conn,
                self.actor,
                key,
                normalised,
                now=now,
                previous={"previous": previous.value, "previous_source": previous.source}
                if previous
                else None,
            )
        return SettingView(key, normalised, "set", self.actor, record.created_at, record.ledger_seq)


# -- settings whose values other services own (trusted keys, thresholds, provenance) ---------

THRESHOLDS_PREFIX = "eval.thresholds."
MAX_SETTING_KEY = 200


@dataclass(frozen=True)
class SettingRecord:
    """A setting row that checked out against the ledger, with its value parsed."""

    id: int
    key: str
    value: Any
    created_at: str
    created_by: str
    ledger_seq: int | None


def roles_for_setting(key: str) -> frozenset[Role]:
    """Who may write setting `key`: admins; for evaluation thresholds, reviewers too."""
    if key.startswith(THRESHOLDS_PREFIX):
        return frozenset({Role.ADMIN, Role.REVIEWER})
    return frozenset({Role.ADMIN})


def check_setting_key(key: str) -> None:
    if (
        not isinstance(key, str)
        or not key
        or len(key) > MAX_SETTING_KEY
        or any(ord(c) < 33 for c in key)
    ):
        raise InputError(f"setting key {key!r} must be 1-{MAX_SETTING_KEY} printable characters")


def verified_setting(conn: Connection, key: str) -> SettingRecord | None:
    """The current row of `key` after checking it against the ledger; None when never set.
    VerificationError when the row was edited, inserted or deleted behind modelward's back."""
    row = SettingsRepository(conn).latest(key)
    if row is None:
        trusted_setting(conn, key)  # refuses when rows the ledger anchored were deleted
        return None
    problem = row_anchor_problem(conn, row) or verify_current(
        conn, SETTINGS_TABLE, str(row.id), f"setting:{key}"
    )
    if problem is not None:
        raise VerificationError(f"setting {key!r}: {problem}")
    return SettingRecord(
        row.id, row.key, json.loads(row.value), row.created_at, row.created_by, row.ledger_seq
    )


def verified_value(conn: Connection, key: str, default: Any = None) -> Any:
    record = verified_setting(conn, key)
    return default if record is None else record.value


def set_in(
    conn: Connection,
    actor: str,
    key: str,
    value: Any,
    *,
    now: datetime,
    now_text: str | None = None,
    previous: dict[str, Any] | None = None,
) -> SettingRecord:
    """Write `key` = `value` (a JSON value) inside the caller's transaction: a new row, a
    `settings.set` event anchoring it, and the row's ledger seq. Refused unless the actor's
    role may write the key (`roles_for_setting`)."""
    check_setting_key(key)
    allowed = roles_for_setting(key)
    role = role_of(conn, actor)
    if role not in allowed:
        needed = " or ".join(sorted(r.value for r in allowed))
        raise PermissionDeniedError(
            f"{actor!r} (with role {role.value}) may not change the setting {key!r}; "
            f"this needs the {needed} role"
        )
    text = canonical_json(value).decode("utf-8")
    created_at = now_text or format_time(now)
    repo = SettingsRepository(conn)
    row_id = repo.put(key, text, created_at, actor)
    row = SettingRow(row_id, key, text, created_at, actor, None)
    details = {"key": key, "value": value, **(previous or {})}
    anchor = Anchor.of_row(SETTINGS_TABLE, str(row_id), row_fields(row))
    event = LedgerRepository(conn).append(
        actor, SETTINGS_EVENT, f"setting:{key}", with_anchors(details, [anchor]), now
    )
    repo.set_ledger_seq(row_id, event.seq)
    return SettingRecord(row_id, key, value, created_at, actor, event.seq)
