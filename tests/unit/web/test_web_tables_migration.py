"""Migration 0009 makes the console's tables exactly as `web_tables` declares them, and its
downgrade removes them again."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from modelward.storage.metadata.migrations import alembic_config
from modelward.storage.metadata.web_tables import web_logins, web_sessions


def _columns(engine: object, table: str) -> dict[str, bool]:
    return {c["name"]: c["nullable"] for c in inspect(engine).get_columns(table)}  # type: ignore[arg-type]


def test_migration_0009_matches_the_declared_tables_and_downgrades(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
    for table in (web_sessions, web_logins):
        assert _columns(engine, table.name) == {c.name: bool(c.nullable) for c in table.columns}
    indexes = {i["name"] for i in inspect(engine).get_indexes("web_sessions")}
    assert {"ix_web_sessions_user_name", "ix_web_sessions_expires_at"} <= indexes
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0007")
    assert not {"web_sessions", "web_logins"} & set(inspect(engine).get_table_names())
    engine.dispose()
