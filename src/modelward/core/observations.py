"""One served request, as telemetry reports it, attributed to a release.

The shape shared by what ingests telemetry (OTLP spans mapped from `gen_ai.*` and OpenInference
attributes) and what judges it (canary and shadow analysis, drift). Pure data: no I/O.

`release_id` is the id of the gate release record the request was served by (the release an
environment was on when the span was emitted); `model` and `version` name the version it served.
Every measured field is optional: a span that did not carry it leaves it `None`, and the judges
treat `None` as "not observed", never as zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# Finish reasons, normalised across OTel GenAI and OpenInference spellings.
FINISH_REASONS: tuple[str, ...] = (
    "stop",
    "length",
    "content_filter",
    "tool_calls",
    "error",
    "other",
)


@dataclass(frozen=True)
class Observation:
    model: str
    version: int
    release_id: str | None
    environment: str | None
    time_unix_nano: int  # the span's end time
    trace_id: str  # hex
    span_id: str  # hex; (trace_id, span_id) identifies a request, duplicates are dropped
    error: bool
    duration_s: float | None = None
    ttft_s: float | None = None  # time to first token
    tpot_s: float | None = None  # time per output token
    input_tokens: int | None = None
    output_tokens: int | None = None
    finish_reason: str | None = None  # one of FINISH_REASONS
    refusal: bool | None = None  # None: no classifier ran
    tool_calls: int | None = None
    safety_triggered: bool | None = None
    feedback: float | None = None  # user feedback score, when the span carries one
    arm: str | None = None  # "canary", "baseline", "shadow" when the serving layer says so

    def __post_init__(self) -> None:
        for name in ("duration_s", "ttft_s", "tpot_s", "feedback"):
            value = getattr(self, name)
            if value is not None and (
                not isinstance(value, int | float) or not math.isfinite(value)
            ):
                raise ValueError(f"observation field {name} must be a finite number, got {value!r}")
        if self.finish_reason is not None and self.finish_reason not in FINISH_REASONS:
            raise ValueError(f"unknown finish reason {self.finish_reason!r}")

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


@dataclass(frozen=True)
class MetricPoint:
    """One OTLP histogram data point of a GenAI metric, attributed to a release.

    `metric` is the OTel name (`gen_ai.client.operation.duration`, ...); `token_type` is
    `input` or `output` for `gen_ai.client.token.usage`; `error` is whether the point's
    attributes carried `error.type`. `series` identifies the time series (metric, attributes,
    resource) so that cumulative points can be turned into deltas; (series, start, time)
    identifies a point, duplicates are dropped. Bucket counts may be empty (count and sum only).
    """

    model: str
    version: int
    release_id: str | None
    environment: str | None
    arm: str | None
    metric: str
    token_type: str | None
    error: bool
    temporality: str  # "delta" or "cumulative"
    series: str
    start_unix_nano: int
    time_unix_nano: int
    count: int
    sum: float
    min: float | None = None
    max: float | None = None
    bounds: tuple[float, ...] = ()
    bucket_counts: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.temporality not in ("delta", "cumulative"):
            raise ValueError(f"unknown temporality {self.temporality!r}")
        if self.count < 0 or not math.isfinite(self.sum):
            raise ValueError("a metric point needs a count >= 0 and a finite sum")
        if self.bucket_counts and len(self.bucket_counts) != len(self.bounds) + 1:
            raise ValueError("a histogram has one more bucket than bounds")

    @property
    def signal(self) -> str:
        """The metric name, with the token type for token usage (`...token.usage.output`)."""
        return f"{self.metric}.{self.token_type}" if self.token_type else self.metric

    def to_dict(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self.__dataclass_fields__}
        out["bounds"], out["bucket_counts"] = list(self.bounds), list(self.bucket_counts)
        return out
