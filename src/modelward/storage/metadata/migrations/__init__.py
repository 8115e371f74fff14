"""Alembic migrations for every modelward table; `upgrade_to_head` runs them in-process.

Alembic is imported only when a migration runs: opening a registry compares the stored revision
with `SCHEMA_HEAD` and needs no Alembic (a server's cold start is shorter by its import).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy.engine import Connection

HERE = Path(__file__).resolve().parent
# The newest revision; a test pins it to Alembic's head so opening a registry needs no Alembic.
SCHEMA_HEAD = "0012"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(HERE))
    config.attributes["connection"] = connection
    return config


def upgrade_to_head(connection: Connection) -> None:
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
