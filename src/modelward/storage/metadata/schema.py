"""The one SQLAlchemy `MetaData` every table of modelward is declared on.

Table modules (`registry_tables`, `ledger_tables`, …) add their tables to `metadata`; Alembic
migrations are written against it. Declares tables only; holds no SQL statements.
"""

from __future__ import annotations

from sqlalchemy import MetaData

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)
