"""Migration 0012 makes `upload_claims` and `auth_failures` exactly as `auth_tables` declares
them (keys included), and downgrades."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from sqlalchemy import create_engine, inspect

from modelward.storage.metadata.auth_tables import auth_failures, upload_claims
from modelward.storage.metadata.migrations import alembic_config


def test_migration_0012_matches_the_declared_tables_and_downgrades(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite:///{tmp_path / 'm.db'}")
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0012")
    found = inspect(engine)
    for table in (upload_claims, auth_failures):
        columns = {
            c["name"]: (c["nullable"], str(c["type"])) for c in found.get_columns(table.name)
        }
        assert columns == {
            c.name: (bool(c.nullable), str(c.type.compile(engine.dialect))) for c in table.columns
        }
        assert found.get_pk_constraint(table.name)["constrained_columns"] == [
            c.name for c in table.primary_key.columns
        ]
    with engine.begin() as conn:
        command.downgrade(alembic_config(conn), "0011")
    names = inspect(engine).get_table_names()
    assert "upload_claims" not in names and "auth_failures" not in names
    engine.dispose()
