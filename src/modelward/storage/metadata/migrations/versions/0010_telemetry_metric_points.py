"""telemetry: OTLP histogram points of GenAI metrics, unique by (series, start, time)

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_metric_points",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("series", sa.String(length=64), nullable=False),
        sa.Column("metric", sa.String(length=100), nullable=False),
        sa.Column("token_type", sa.String(length=20), nullable=True),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=True),
        sa.Column("environment", sa.String(length=100), nullable=True),
        sa.Column("arm", sa.String(length=40), nullable=True),
        sa.Column("temporality", sa.String(length=12), nullable=False),
        sa.Column("start_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("time_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.Column("sum", sa.Float(), nullable=False),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("bounds", sa.Text(), nullable=False),
        sa.Column("bucket_counts", sa.Text(), nullable=False),
        sa.Column("received_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("ingested_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_metric_points")),
        sa.UniqueConstraint(
            "series", "start_unix_nano", "time_unix_nano", name="uq_telemetry_metric_points_point"
        ),
    )
    with op.batch_alter_table("telemetry_metric_points", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_metric_points_model_time", ["model", "time_unix_nano"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("telemetry_metric_points", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_metric_points_model_time")
    op.drop_table("telemetry_metric_points")
