"""The telemetry tables on the shared `metadata`: one row per served request (an OTLP span mapped
to an `Observation`), keyed uniquely by (trace_id, span_id) so a span sent twice is stored once;
and one row per OTLP histogram point of a GenAI metric, keyed uniquely by (series, start, time).

Declares the tables only; the SQL lives in `telemetry_repository`.
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

# One row per OTLP histogram point of a GenAI metric (`runtime.otlp_metrics`), attributed to a
# release like a span; (series, start, time) is unique so a retried export is stored once.
telemetry_metric_points = Table(
    "telemetry_metric_points",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("series", String(64), nullable=False),
    Column("metric", String(100), nullable=False),
    Column("token_type", String(20), nullable=True),
    Column("error", Boolean, nullable=False),
    Column("model", String(200), nullable=False),
    Column("version", Integer, nullable=False),
    Column("release_id", String(64), nullable=True),
    Column("environment", String(100), nullable=True),
    Column("arm", String(40), nullable=True),
    Column("temporality", String(12), nullable=False),
    Column("start_unix_nano", BigInteger, nullable=False),
    Column("time_unix_nano", BigInteger, nullable=False),
    Column("count", BigInteger, nullable=False),
    Column("sum", Float, nullable=False),
    Column("min", Float, nullable=True),
    Column("max", Float, nullable=True),
    Column("bounds", Text, nullable=False),  # JSON list of explicit bounds
    Column("bucket_counts", Text, nullable=False),  # JSON list, one more than the bounds
    Column("received_unix_nano", BigInteger, nullable=False),
    Column("ingested_by", String(200), nullable=False),
    UniqueConstraint(
        "series", "start_unix_nano", "time_unix_nano", name="uq_telemetry_metric_points_point"
    ),
    Index("ix_telemetry_metric_points_model_time", "model", "time_unix_nano"),
)
