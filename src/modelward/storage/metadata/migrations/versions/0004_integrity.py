"""integrity: registry settings, ledger event seals, a subject index, ledger anchors on state rows

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Tables whose rows are anchored by the ledger event that wrote them.
_ANCHORED = (
    "users",
    "aliases",
    "attestations",
    "gate_policies",
    "gate_approvals",
    "gate_decisions",
    "gate_releases",
    "gate_drills",
)


def upgrade() -> None:
    op.create_table(
        "registry_settings",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("created_at", sa.String(length=40), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("ledger_seq", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registry_settings")),
    )
    with op.batch_alter_table("registry_settings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_registry_settings_key"), ["key"], unique=False)
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("seal", sa.LargeBinary(length=32), nullable=True))
        batch_op.create_index(batch_op.f("ix_ledger_events_subject"), ["subject"], unique=False)
    for table in _ANCHORED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("ledger_seq", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in _ANCHORED:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("ledger_seq")
    with op.batch_alter_table("ledger_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ledger_events_subject"))
        batch_op.drop_column("seal")
    with op.batch_alter_table("registry_settings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_registry_settings_key"))
    op.drop_table("registry_settings")
