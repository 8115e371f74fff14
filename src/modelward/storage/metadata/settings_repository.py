"""All of the SQL of `registry_settings`: insert a setting, read the latest value of each key.

The table is insert-only: `put` adds a row and the newest row of a key (highest id) is its
current value. `value` is the canonical JSON the service wrote; this module neither parses nor
validates it, and neither checks the ledger anchor nor commits (the service does both).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.engine import Connection

from modelward.storage.metadata.registry_tables import registry_settings


@dataclass(frozen=True)
class SettingRow:
    id: int
    key: str
    value: str  # canonical JSON
    created_at: str
    created_by: str
    ledger_seq: int | None


def _row(row: Any) -> SettingRow:
    return SettingRow(
        id=int(row[0]),
        key=str(row[1]),
        value=str(row[2]),
        created_at=str(row[3]),
        created_by=str(row[4]),
        ledger_seq=None if row[5] is None else int(row[5]),
    )


_COLUMNS = (
    registry_settings.c.id,
    registry_settings.c.key,
    registry_settings.c.value,
    registry_settings.c.created_at,
    registry_settings.c.created_by,
    registry_settings.c.ledger_seq,
)


class SettingsRepository:
    """The registry settings' storage, bound to one connection (and so to one transaction)."""

    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def latest(self, key: str) -> SettingRow | None:
        """The newest row of `key`, or None when it was never set."""
        row = self._conn.execute(
            select(*_COLUMNS)
            .where(registry_settings.c.key == key)
            .order_by(registry_settings.c.id.desc())
            .limit(1)
        ).first()
        return None if row is None else _row(row)

    def put(self, key: str, value: str, created_at: str, created_by: str) -> int:
        """Insert a new value of `key`; returns the row id."""
        result = self._conn.execute(
            insert(registry_settings).values(
                key=key, value=value, created_at=created_at, created_by=created_by
            )
        )
        primary = result.inserted_primary_key
        assert primary is not None
        return int(primary[0])

    def set_ledger_seq(self, row_id: int, seq: int) -> None:
        """Record the ledger event that anchors the row (written once, right after `put`)."""
        self._conn.execute(
            update(registry_settings).where(registry_settings.c.id == row_id).values(ledger_seq=seq)
        )

    def all_latest(self) -> list[SettingRow]:
        """The newest row of every key, ordered by key."""
        newest = (
            select(func.max(registry_settings.c.id).label("id"))
            .group_by(registry_settings.c.key)
            .subquery()
        )
        rows = self._conn.execute(
            select(*_COLUMNS)
            .where(registry_settings.c.id.in_(select(newest.c.id)))
            .order_by(registry_settings.c.key)
        )
        return [_row(row) for row in rows]
