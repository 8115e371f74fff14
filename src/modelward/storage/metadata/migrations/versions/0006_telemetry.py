"""telemetry: per-request observations mapped from OTLP spans, unique by (trace_id, span_id)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "telemetry_observations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("trace_id", sa.String(length=32), nullable=False),
        sa.Column("span_id", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("release_id", sa.String(length=64), nullable=True),
        sa.Column("environment", sa.String(length=100), nullable=True),
        sa.Column("time_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("received_unix_nano", sa.BigInteger(), nullable=False),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=True),
        sa.Column("ttft_s", sa.Float(), nullable=True),
        sa.Column("tpot_s", sa.Float(), nullable=True),
        sa.Column("input_tokens", sa.Integer(), nullable=True),
        sa.Column("output_tokens", sa.Integer(), nullable=True),
        sa.Column("finish_reason", sa.String(length=20), nullable=True),
        sa.Column("refusal", sa.Boolean(), nullable=True),
        sa.Column("tool_calls", sa.Integer(), nullable=True),
        sa.Column("safety_triggered", sa.Boolean(), nullable=True),
        sa.Column("feedback", sa.Float(), nullable=True),
        sa.Column("arm", sa.String(length=40), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        sa.Column("ingested_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_telemetry_observations")),
        sa.UniqueConstraint("trace_id", "span_id", name="uq_telemetry_observations_span"),
    )
    with op.batch_alter_table("telemetry_observations", schema=None) as batch_op:
        batch_op.create_index(
            "ix_telemetry_observations_model_time", ["model", "time_unix_nano"], unique=False
        )
        batch_op.create_index(
            "ix_telemetry_observations_release_time", ["release_id", "time_unix_nano"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("telemetry_observations", schema=None) as batch_op:
        batch_op.drop_index("ix_telemetry_observations_release_time")
        batch_op.drop_index("ix_telemetry_observations_model_time")
    op.drop_table("telemetry_observations")
