"""Alembic migrations for every modelward table; `upgrade_to_head` runs them in-process."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
# The newest revision; a test pins it to Alembic's head so opening a registry needs no Alembic.
SCHEMA_HEAD = "0007"


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    command.upgrade(alembic_config(connection), "head")
