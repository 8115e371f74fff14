"""The telemetry table on the shared `metadata`: one row per served request (an OTLP span mapped
to an `Observation`), keyed uniquely by (trace_id, span_id) so a span sent twice is stored once.

Declares the table only; the SQL lives in `telemetry_repository`.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from modelward.storage.metadata.schema import metadata

telemetry_observations = Table(
    "telemetry_observations",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("trace_id", String(32), nullable=False),
    Column("span_id", String(16), nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("release_id", String(64), nullable=True),
    Column("environment", String(100), nullable=True),
    Column("time_unix_nano", BigInteger, nullable=False),
    Column("received_unix_nano", BigInteger, nullable=False),
    Column("error", Boolean, nullable=False),
    Column("duration_s", Float, nullable=True),
    Column("ttft_s", Float, nullable=True),
    Column("tpot_s", Float, nullable=True),
    Column("input_tokens", Integer, nullable=True),
    Column("output_tokens", Integer, nullable=True),
    Column("finish_reason", String(20), nullable=True),
    Column("refusal", Boolean, nullable=True),
    Column("tool_calls", Integer, nullable=True),
    Column("safety_triggered", Boolean, nullable=True),
    Column("feedback", Float, nullable=True),
    Column("arm", String(40), nullable=True),
    Column("content", Text, nullable=True),  # prompt/output text, only when configured
    Column("ingested_by", String(200), nullable=False),
    UniqueConstraint("trace_id", "span_id", name="uq_telemetry_observations_span"),
    Index("ix_telemetry_observations_model_time", "model", "time_unix_nano"),
    Index("ix_telemetry_observations_release_time", "release_id", "time_unix_nano"),
)
