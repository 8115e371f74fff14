"""Registry settings: security state set by an authorised user with a ledgered command, and read
back only after its ledger anchor checks out.

`SettingsService.set(key, value)` inserts a new `registry_settings` row, appends a
`setting.set` ledger event (subject `setting:KEY`) whose details carry the new value and the
row's anchor, and records the event's seq on the row, in one transaction. Only an admin may set
a setting; evaluation thresholds (`eval.thresholds.*`) may also be set by a reviewer.

`verified_setting(conn, key)` is how every reader gets a setting: the current row must be the one
the newest ledger event about the key anchored, with the same digest. A row edited, inserted or
deleted behind modelward's back raises VerificationError naming the key, so callers fail closed.
Knows nothing of what the values mean (see `trusted_keys`, `thresholds`, `provenance_policy`).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy.engine import Connection

from modelward.core.anchors import anchors_in, with_anchors
from modelward.core.roles import Role
from modelward.errors import InputError, NotFoundError, PermissionDeniedError, VerificationError
from modelward.services.context import RegistryContext, current_actor, utc_now
from modelward.services.users import role_of
from modelward.storage.metadata.ledger_repository import LedgerRepository, format_time
from modelward.storage.metadata.settings_repository import (
    SETTINGS_TABLE,
    SettingRecord,
    SettingsRepository,
    setting_anchor,
    setting_subject,
)

THRESHOLDS_PREFIX = "eval.thresholds."
MAX_SETTING_KEY = 200


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
    """The current row of `key` after checking it against the ledger; None when never set."""
    repo = SettingsRepository(conn)
    record = repo.latest(key)
    last = repo.last_event_seq(key)
    if record is None:
        if last is not None:
            raise VerificationError(
                f"setting {key!r}: ledger event #{last} set it, but its row is missing"
            )
        return None
    if record.ledger_seq is None:
        raise VerificationError(f"setting {key!r}: row {record.id} has no ledger event")
    if last != record.ledger_seq:
        raise VerificationError(
            f"setting {key!r}: the current row was written by ledger event #{record.ledger_seq}, "
            f"but the newest event about it is #{last}"
        )
    try:
        event = LedgerRepository(conn).event(record.ledger_seq)
    except NotFoundError as exc:
        raise VerificationError(
            f"setting {key!r}: its ledger event #{record.ledger_seq} is missing"
        ) from exc
    expected = setting_anchor(record)
    anchored = [a for a in anchors_in(event.details) if a.table == SETTINGS_TABLE and a.key == key]
    if event.subject != setting_subject(key) or not anchored:
        raise VerificationError(
            f"setting {key!r}: ledger event #{record.ledger_seq} does not anchor it"
        )
    if anchored[-1].digest != expected.digest:
        raise VerificationError(
            f"setting {key!r}: the row differs from what ledger event #{record.ledger_seq} "
            "recorded (edited behind modelward's back)"
        )
    return record


def verified_value(conn: Connection, key: str, default: Any = None) -> Any:
    record = verified_setting(conn, key)
    return default if record is None else record.value


class SettingsService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def get(self, key: str) -> SettingRecord | None:
        """The verified current value of `key` (VerificationError when its row was tampered)."""
        check_setting_key(key)
        with self.ctx.database.read() as conn:
            role_of(conn, self.actor)
            return verified_setting(conn, key)

    def all(self, keys: Iterable[str] | None = None) -> dict[str, SettingRecord]:
        """Every current setting (or those of `keys`), each verified."""
        with self.ctx.database.read() as conn:
            role_of(conn, self.actor)
            names = (
                sorted(keys) if keys is not None else sorted(SettingsRepository(conn).all_latest())
            )
            found = {}
            for key in names:
                record = verified_setting(conn, key)
                if record is not None:
                    found[key] = record
            return found

    def set(self, key: str, value: Any) -> SettingRecord:
        """Write `key` = `value` (a JSON value), ledgered; refused unless the actor's role may."""
        check_setting_key(key)
        now = utc_now()
        with self.ctx.database.transaction() as conn:
            return set_in(conn, self.actor, key, value, now_text=format_time(now), now=now)


def set_in(
    conn: Connection, actor: str, key: str, value: Any, *, now_text: str, now: datetime
) -> SettingRecord:
    """`SettingsService.set` inside the caller's transaction (for services that read, check and
    write a setting in one unit of work)."""
    allowed = roles_for_setting(key)
    role = role_of(conn, actor)
    if role not in allowed:
        needed = ", ".join(sorted(r.value for r in allowed))
        raise PermissionDeniedError(
            f"{actor!r} (with role {role.value}) may not change the setting {key!r}; "
            f"this needs one of: {needed}"
        )
    repo = SettingsRepository(conn)
    previous = verified_setting(conn, key)
    record = repo.put(key, value, now_text, actor)
    details = {
        "key": key,
        "value": value,
        "previous_ledger_seq": previous.ledger_seq if previous else None,
    }
    event = LedgerRepository(conn).append(
        actor,
        "setting.set",
        setting_subject(key),
        with_anchors(details, [setting_anchor(record)]),
        now,
    )
    repo.set_ledger_seq(record.id, event.seq)
    return SettingRecord(
        record.id, record.key, record.value_json, record.created_at, record.created_by, event.seq
    )
