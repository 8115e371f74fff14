"""Migration 0010 makes `telemetry_metric_points` as `telemetry_tables` declares it; 0011 adds
the jobs' unique dedupe key keeping the jobs already queued; both downgrade."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic import command
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.exc import IntegrityError

from modelward.storage.metadata.auth_tables import jobs
from modelward.storage.metadata.migrations import alembic_config
from modelward.storage.metadata.telemetry_tables import telemetry_metric_points


def _columns(engine: object, table: str) -> dict[str, bool]:
    return {c["name"]: c["nullable"] for c in inspect(engine).get_columns(table)}  # type: ignore[arg-type]


def test_migrations_match_the_declared_tables_keep_jobs_and_downgrade(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
        conn.execute(
            text(
                "insert into jobs (kind, payload, state, attempts, created_at, created_by) "
                "values ('verify', '{}', 'queued', 0, 'then', 'root')"
            )
        )
        command.upgrade(alembic_config(conn), "0011")
    for table in (telemetry_metric_points, jobs):
        assert _columns(engine, table.name) == {c.name: bool(c.nullable) for c in table.columns}
    uniques = {u["name"] for u in inspect(engine).get_unique_constraints("telemetry_metric_points")}
    assert "uq_telemetry_metric_points_point" in uniques
    assert "uq_jobs_dedupe_key" in {
        u["name"] for u in inspect(engine).get_unique_constraints("jobs")
    }
    insert = (
        "insert into jobs (kind, payload, state, attempts, created_at, created_by, dedupe_key) "
        "values ('verify', '{}', 'queued', 0, 'now', 'root', :key)"
    )
    with engine.begin() as conn:
        assert conn.execute(text("select count(*) from jobs")).scalar() == 1  # kept
        conn.execute(text(insert), {"key": None})
        conn.execute(text(insert), {"key": None})  # NULL keys never collide
        conn.execute(text(insert), {"key": "canary.judge:1:1"})
    with pytest.raises(IntegrityError), engine.begin() as conn:
        conn.execute(text(insert), {"key": "canary.judge:1:1"})
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0009")
    assert "telemetry_metric_points" not in inspect(engine).get_table_names()
    assert "dedupe_key" not in _columns(engine, "jobs")
    engine.dispose()
