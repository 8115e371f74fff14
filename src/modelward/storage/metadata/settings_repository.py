"""All SQL of `registry_settings`: the registry's security settings, insert-only, latest row wins.

A setting is a key (e.g. `trusted_keys`, `eval.thresholds.SUITE`, `provenance.required_fields`)
and a JSON value stored as canonical JSON. Writing inserts a new row; the current value of a key
is its row with the highest id. `setting_anchor` gives the ledger anchor of a row (table
`registry_settings`, key = the setting key), so replaying the ledger's anchors yields the digest
the current row of every key must have. Bound to one connection; never commits; checks nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from modelward.core.anchors import Anchor
from modelward.core.canonical import canonical_json
from modelward.storage.metadata.ledger_tables import ledger_events
from modelward.storage.metadata.registry_tables import registry_settings

SETTINGS_TABLE = "registry_settings"


def setting_subject(key: str) -> str:
    """The ledger subject of every event that writes setting `key`."""
    return f"setting:{key}"


@dataclass(frozen=True)
class SettingRecord:
    id: int
    key: str
    value_json: str  # canonical JSON, as stored
    created_at: str
    created_by: str
    ledger_seq: int | None

    @property
    def value(self) -> Any:
        return json.loads(self.value_json)

    def anchor_fields(self) -> dict[str, Any]:
        """The columns a setting row's meaning depends on (what its ledger anchor hashes)."""
        return {
            "id": self.id,
            "key": self.key,
            "value": self.value_json,
            "created_at": self.created_at,
            "created_by": self.created_by,
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "value": self.value,
            "set_at": self.created_at,
            "set_by": self.created_by,
            "ledger_seq": self.ledger_seq,
        }


def setting_anchor(record: SettingRecord) -> Anchor:
    return Anchor.of_row(SETTINGS_TABLE, record.key, record.anchor_fields())


_COLUMNS = (
    registry_settings.c.id,
    registry_settings.c.key,
    registry_settings.c.value,
    registry_settings.c.created_at,
    registry_settings.c.created_by,
    registry_settings.c.ledger_seq,
)


def _record(row: Any) -> SettingRecord:
    seq = row[5]
    return SettingRecord(
        int(row[0]), row[1], row[2], row[3], row[4], None if seq is None else int(seq)
    )


class SettingsRepository:
    """Registry settings bound to one connection (one transaction)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def latest(self, key: str) -> SettingRecord | None:
        """The current row of `key` (highest id), or None when it was never set."""
        row = self._conn.execute(
            select(*_COLUMNS)
            .where(registry_settings.c.key == key)
            .order_by(registry_settings.c.id.desc())
            .limit(1)
        ).first()
        return _record(row) if row is not None else None

    def put(self, key: str, value: Any, created_at: str, created_by: str) -> SettingRecord:
        """Insert a new row for `key` (its ledger_seq is set afterwards with `set_ledger_seq`)."""
        value_json = canonical_json(value).decode("utf-8")
        new_id = self._conn.execute(
            insert(registry_settings)
            .values(key=key, value=value_json, created_at=created_at, created_by=created_by)
            .returning(registry_settings.c.id)
        ).scalar_one()
        return SettingRecord(int(new_id), key, value_json, created_at, created_by, None)

    def set_ledger_seq(self, setting_id: int, seq: int) -> None:
        self._conn.execute(
            update(registry_settings)
            .where(registry_settings.c.id == setting_id)
            .values(ledger_seq=seq)
        )

    def all_latest(self) -> dict[str, SettingRecord]:
        """The current row of every key that was ever set."""
        newest = (
            select(func.max(registry_settings.c.id).label("id"))
            .group_by(registry_settings.c.key)
            .subquery()
        )
        rows = self._conn.execute(
            select(*_COLUMNS).where(registry_settings.c.id.in_(select(newest.c.id)))
        ).all()
        return {record.key: record for record in map(_record, rows)}

    def history(self, key: str) -> list[SettingRecord]:
        rows = self._conn.execute(
            select(*_COLUMNS).where(registry_settings.c.key == key).order_by(registry_settings.c.id)
        ).all()
        return [_record(row) for row in rows]

    def last_event_seq(self, key: str) -> int | None:
        """The seq of the newest ledger event about setting `key` (by subject), or None."""
        value = self._conn.execute(
            select(func.max(ledger_events.c.seq)).where(
                ledger_events.c.subject == setting_subject(key)
            )
        ).scalar()
        return None if value is None else int(value)
