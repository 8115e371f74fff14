"""Signals per release and time window, computed from observations: request count, error rate,
latency, time to first token, time per output token, output tokens, finish reasons, refusals,
tool calls, safety-filter triggers and feedback; and, from GenAI metric points, one merged
histogram per signal (`metrics`, keyed by metric name, token usage split as
`gen_ai.client.token.usage.input` / `.output`).

A metric point counts in the window of its time (after cumulative points are turned into
deltas, `runtime.metric_signals.deltas`); a delta whose interval is longer than the window (the
first point of a long-running cumulative series) is left out rather than piled into one window.
Metrics and spans are reported side by side, never added together: a service exporting both
describes the same requests twice. `requests` counts spans; a window with metric points only
has `requests` 0 and `error_rate` None.

A field no observation carried is reported as `None` (not observed), never as zero; a rate's
denominator is the number of observations that carried the field. Pure: observations in,
summaries out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelward.core.observations import FINISH_REASONS, MetricPoint, Observation
from modelward.errors import InputError
from modelward.runtime.metric_signals import HistogramSummary, deltas, summaries_by_signal


@dataclass(frozen=True)
class Distribution:
    count: int
    mean: float
    p50: float
    p95: float
    max: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Distribution | None:
        if not values:
            return None
        ordered = sorted(values)
        return cls(
            len(ordered),
            sum(ordered) / len(ordered),
            _quantile(ordered, 0.50),
            _quantile(ordered, 0.95),
            ordered[-1],
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "mean": self.mean,
            "p50": self.p50,
            "p95": self.p95,
            "max": self.max,
        }


@dataclass(frozen=True)
class WindowSummary:
    model: str
    release_id: str | None
    version: int
    environment: str | None
    window_start_ns: int
    window_end_ns: int
    requests: int
    errors: int
    error_rate: float | None  # None: no spans in the window (metric points only)
    latency_s: Distribution | None
    ttft_s: Distribution | None
    tpot_s: Distribution | None
    output_tokens: Distribution | None
    finish_reasons: dict[str, int] = field(default_factory=dict)
    refusals: int | None = None
    refusal_rate: float | None = None  # of the requests a classifier looked at
    tool_calls: int | None = None
    safety_triggers: int | None = None
    feedback: Distribution | None = None
    metrics: dict[str, HistogramSummary] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.to_dict() if isinstance(value, Distribution) else value
        out["metrics"] = {k: v.to_dict() for k, v in self.metrics.items()}
        return out


_Key = tuple[int, str, str, int, str]  # window start, model, release, version, environment


def summarise(
    observations: Iterable[Observation],
    window_s: float,
    *,
    origin_ns: int = 0,
    points: Iterable[MetricPoint] = (),
) -> list[WindowSummary]:
    """One summary per (release, version, environment, window of `window_s` seconds aligned
    on `origin_ns`), in time order. A release that changes inside a window gives two summaries
    for that window, one per release: a window never mixes releases."""
    if not window_s > 0:
        raise InputError("the window must be a positive number of seconds")
    width = int(window_s * 1e9)
    groups: dict[_Key, list[Observation]] = {}
    point_groups: dict[_Key, list[MetricPoint]] = {}
    for obs in observations:
        start = origin_ns + ((obs.time_unix_nano - origin_ns) // width) * width
        key = (start, obs.model, obs.release_id or "", obs.version, obs.environment or "")
        groups.setdefault(key, []).append(obs)
    for point in deltas(points):
        if point.time_unix_nano - point.start_unix_nano > width:
            continue
        start = origin_ns + ((point.time_unix_nano - origin_ns) // width) * width
        key = (start, point.model, point.release_id or "", point.version, point.environment or "")
        point_groups.setdefault(key, []).append(point)
    return [
        _summary(groups.get(key, []), point_groups.get(key, []), key, width)
        for key in sorted({*groups, *point_groups})
    ]


def _summary(
    items: list[Observation],
    points: list[MetricPoint],
    key: _Key,
    width: int,
) -> WindowSummary:
    start, model, release_id, version, environment = key
    errors = sum(1 for o in items if o.error)
    reasons = {r: 0 for r in FINISH_REASONS}
    for o in items:
        if o.finish_reason is not None:
            reasons[o.finish_reason] += 1
    classified = [o.refusal for o in items if o.refusal is not None]
    tools = [o.tool_calls for o in items if o.tool_calls is not None]
    safety = [o.safety_triggered for o in items if o.safety_triggered is not None]
    return WindowSummary(
        model=model,
        release_id=release_id or None,
        version=version,
        environment=environment or None,
        window_start_ns=start,
        window_end_ns=start + width,
        requests=len(items),
        errors=errors,
        error_rate=errors / len(items) if items else None,
        latency_s=Distribution.of([o.duration_s for o in items if o.duration_s is not None]),
        ttft_s=Distribution.of([o.ttft_s for o in items if o.ttft_s is not None]),
        tpot_s=Distribution.of([o.tpot_s for o in items if o.tpot_s is not None]),
        output_tokens=Distribution.of(
            [float(o.output_tokens) for o in items if o.output_tokens is not None]
        ),
        finish_reasons={r: n for r, n in reasons.items() if n},
        refusals=sum(classified) if classified else None,
        refusal_rate=sum(classified) / len(classified) if classified else None,
        tool_calls=sum(tools) if tools else None,
        safety_triggers=sum(safety) if safety else None,
        feedback=Distribution.of([o.feedback for o in items if o.feedback is not None]),
        metrics=summaries_by_signal(points),
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """The nearest-rank quantile (an observed value, no interpolation)."""
    index = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[index]
