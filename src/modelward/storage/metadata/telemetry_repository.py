"""All of the telemetry table's SQL: insert observations (a span already stored by its
(trace_id, span_id) is skipped, not an error) and read them back by model, environment, release
and time. Works inside the caller's transaction; does not commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection

from modelward.core.observations import Observation
from modelward.storage.metadata.telemetry_tables import telemetry_observations as table

_FIELDS = tuple(Observation.__dataclass_fields__)


@dataclass(frozen=True)
class ObservationRow:
    observation: Observation
    received_unix_nano: int
    content: str | None


class TelemetryRepository:
    def __init__(self, conn: Connection) -> None:
        self._conn = conn

    def insert_new(
        self,
        rows: Sequence[tuple[Observation, str | None]],
        received_unix_nano: int,
        ingested_by: str,
    ) -> int:
        """Insert the observations whose (trace_id, span_id) is not stored yet; the number
        inserted. Duplicates inside `rows` count once (the first wins)."""
        unique: dict[tuple[str, str], tuple[Observation, str | None]] = {}
        for observation, content in rows:
            unique.setdefault((observation.trace_id, observation.span_id), (observation, content))
        if not unique:
            return 0
        stored: set[tuple[str, str]] = set()
        keys = list(unique)
        for start in range(0, len(keys), 400):
            batch = keys[start : start + 400]
            found = self._conn.execute(
                select(table.c.trace_id, table.c.span_id).where(
                    tuple_(table.c.trace_id, table.c.span_id).in_(batch)
                )
            )
            stored.update((str(t), str(s)) for t, s in found)
        values = [
            {
                **observation.to_dict(),
                "received_unix_nano": received_unix_nano,
                "content": content,
                "ingested_by": ingested_by,
            }
            for key, (observation, content) in unique.items()
            if key not in stored
        ]
        if values:
            self._conn.execute(_insert_ignoring_duplicates(self._conn), values)
        return len(values)

    def observations(
        self,
        model: str,
        *,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
        limit: int | None = None,
    ) -> list[ObservationRow]:
        query = select(table).where(table.c.model == model)
        if environment is not None:
            query = query.where(table.c.environment == environment)
        if release_id is not None:
            query = query.where(table.c.release_id == release_id)
        if since_ns is not None:
            query = query.where(table.c.time_unix_nano >= since_ns)
        if until_ns is not None:
            query = query.where(table.c.time_unix_nano < until_ns)
        query = query.order_by(table.c.time_unix_nano, table.c.id)
        if limit is not None:
            query = query.limit(limit)
        return [_row(row) for row in self._conn.execute(query)]


def _insert_ignoring_duplicates(conn: Connection) -> Any:
    """INSERT that skips a row whose (trace_id, span_id) a concurrent writer stored meanwhile."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing(index_elements=["trace_id", "span_id"])
    from sqlalchemy import insert

    return insert(table)


def _row(row: Any) -> ObservationRow:
    data = {name: getattr(row, name) for name in _FIELDS}
    for flag in ("error", "refusal", "safety_triggered"):
        if data[flag] is not None:
            data[flag] = bool(data[flag])
    return ObservationRow(Observation(**data), int(row.received_unix_nano), row.content)
