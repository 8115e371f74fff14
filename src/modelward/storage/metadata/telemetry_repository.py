"""All of the telemetry tables' SQL: insert observations (a span already stored by its
(trace_id, span_id) is skipped, not an error) and metric points (likewise by (series, start,
time)), and read them back by model, environment, release and time. Works inside the caller's
transaction; does not commit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select, tuple_
from sqlalchemy.engine import Connection

from modelward.core.observations import MetricPoint, Observation
from modelward.storage.metadata.telemetry_tables import telemetry_metric_points as points_table
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
        if not values:
            return 0
        statement = _insert_ignoring_duplicates(self._conn)
        if self._conn.dialect.name in ("postgresql", "sqlite"):
            # RETURNING counts only the rows really inserted (a concurrent writer may have
            # stored some of them since the check above)
            inserted = self._conn.execute(statement.returning(table.c.id), values)
            return len(inserted.all())
        self._conn.execute(statement, values)
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

    def insert_new_points(
        self, points: Sequence[MetricPoint], received_unix_nano: int, ingested_by: str
    ) -> int:
        """Insert the metric points whose (series, start, time) is not stored yet; the number
        inserted. Duplicates inside `points` count once (the first wins)."""
        unique: dict[tuple[str, int, int], MetricPoint] = {}
        for point in points:
            unique.setdefault((point.series, point.start_unix_nano, point.time_unix_nano), point)
        if not unique:
            return 0
        stored: set[tuple[str, int, int]] = set()
        keys = list(unique)
        c = points_table.c
        for start in range(0, len(keys), 300):
            batch = keys[start : start + 300]
            found = self._conn.execute(
                select(c.series, c.start_unix_nano, c.time_unix_nano).where(
                    tuple_(c.series, c.start_unix_nano, c.time_unix_nano).in_(batch)
                )
            )
            stored.update((str(a), int(b), int(t)) for a, b, t in found)
        values = [
            {
                **point.to_dict(),
                "bounds": json.dumps(list(point.bounds)),
                "bucket_counts": json.dumps(list(point.bucket_counts)),
                "received_unix_nano": received_unix_nano,
                "ingested_by": ingested_by,
            }
            for key, point in unique.items()
            if key not in stored
        ]
        if not values:
            return 0
        statement = _insert_ignoring_duplicates(
            self._conn, points_table, ["series", "start_unix_nano", "time_unix_nano"]
        )
        if self._conn.dialect.name in ("postgresql", "sqlite"):
            inserted = self._conn.execute(statement.returning(c.id), values)
            return len(inserted.all())
        self._conn.execute(statement, values)
        return len(values)

    def metric_points(
        self,
        model: str,
        *,
        environment: str | None = None,
        release_id: str | None = None,
        since_ns: int | None = None,
        until_ns: int | None = None,
    ) -> list[MetricPoint]:
        """The points of `model` whose time is in [since_ns, until_ns), in time order."""
        c = points_table.c
        query = select(points_table).where(c.model == model)
        if environment is not None:
            query = query.where(c.environment == environment)
        if release_id is not None:
            query = query.where(c.release_id == release_id)
        if since_ns is not None:
            query = query.where(c.time_unix_nano >= since_ns)
        if until_ns is not None:
            query = query.where(c.time_unix_nano < until_ns)
        query = query.order_by(c.time_unix_nano, c.id)
        return [_point(row) for row in self._conn.execute(query)]


def _insert_ignoring_duplicates(
    conn: Connection, into: Any = table, keys: Sequence[str] = ("trace_id", "span_id")
) -> Any:
    """INSERT that skips a row whose unique key a concurrent writer stored meanwhile."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(into).on_conflict_do_nothing(index_elements=list(keys))
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(into).on_conflict_do_nothing(index_elements=list(keys))
    from sqlalchemy import insert

    return insert(into)


def _point(row: Any) -> MetricPoint:
    return MetricPoint(
        model=str(row.model),
        version=int(row.version),
        release_id=row.release_id,
        environment=row.environment,
        arm=row.arm,
        metric=str(row.metric),
        token_type=row.token_type,
        error=bool(row.error),
        temporality=str(row.temporality),
        series=str(row.series),
        start_unix_nano=int(row.start_unix_nano),
        time_unix_nano=int(row.time_unix_nano),
        count=int(row.count),
        sum=float(row.sum),
        min=None if row.min is None else float(row.min),
        max=None if row.max is None else float(row.max),
        bounds=tuple(float(b) for b in json.loads(row.bounds)),
        bucket_counts=tuple(int(n) for n in json.loads(row.bucket_counts)),
    )


def _row(row: Any) -> ObservationRow:
    data = {name: getattr(row, name) for name in _FIELDS}
    for flag in ("error", "refusal", "safety_triggered"):
        if data[flag] is not None:
            data[flag] = bool(data[flag])
    return ObservationRow(Observation(**data), int(row.received_unix_nano), row.content)
