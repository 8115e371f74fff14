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
