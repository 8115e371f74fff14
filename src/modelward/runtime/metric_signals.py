"""Signals from stored GenAI metric points: cumulative points turned into deltas, histograms
merged per window, and per-arm summaries for canary judgement.

Deltas. A delta point is its own interval [start, time]. A cumulative series (same `series`,
same start) is differenced point by point: the first point seen is its whole interval since the
series' start; a later one is the difference from the point before it, over [previous time,
time]; a new start time, or a count that went down, is a reset (the point is taken whole).
Differences carry no min or max (they cannot be differenced).

Summaries. `HistogramSummary` is the count, sum and mean (exact), the min and max (when every
merged point had them), and p50 / p95 estimated from merged buckets (the upper bound of the
bucket holding the quantile, clamped to the max; `None` when the points' bounds differ). For a
canary arm the variance is estimated from the buckets' midpoints around the exact mean (the
first and last, open, buckets use the min and max when known, else their finite bound): an
approximation, documented as such in the verdict; without buckets no variance is known and the
metric is not testable from metrics. Pure: points in, summaries out.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

from modelward.core.observations import MetricPoint
from modelward.core.sequential import ArmSummary


def deltas(points: Iterable[MetricPoint]) -> list[MetricPoint]:
    """Every point as a delta over its own interval (see the module docstring), time order."""
    out: list[MetricPoint] = []
    previous: dict[str, MetricPoint] = {}
    for point in sorted(points, key=lambda p: (p.time_unix_nano, p.series, p.start_unix_nano)):
        if point.temporality == "delta":
            out.append(point)
            continue
        before = previous.get(point.series)
        previous[point.series] = point
        if (
            before is None
            or before.start_unix_nano != point.start_unix_nano
            or point.count < before.count
        ):
            out.append(replace(point, temporality="delta"))
            continue
        count = point.count - before.count
        if count == 0:
            continue
        buckets: tuple[int, ...] = ()
        bounds: tuple[float, ...] = ()
        if point.bounds == before.bounds and len(point.bucket_counts) == len(before.bucket_counts):
            diff = tuple(
                a - b for a, b in zip(point.bucket_counts, before.bucket_counts, strict=True)
            )
            if all(d >= 0 for d in diff):
                buckets, bounds = diff, point.bounds
        out.append(
            replace(
                point,
                temporality="delta",
                start_unix_nano=before.time_unix_nano,
                count=count,
                sum=point.sum - before.sum,
                min=None,
                max=None,
                bounds=bounds,
                bucket_counts=buckets,
            )
        )
    return out


@dataclass(frozen=True)
class HistogramSummary:
    count: int
    sum: float
    mean: float
    min: float | None
    max: float | None
    p50: float | None
    p95: float | None
    errors: int  # of the count, points that carried error.type

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _merged_buckets(points: Sequence[MetricPoint]) -> tuple[tuple[float, ...], list[int]] | None:
    bounds = points[0].bounds
    if not points[0].bucket_counts or any(
        p.bounds != bounds or not p.bucket_counts for p in points
    ):
        return None
    merged = [0] * (len(bounds) + 1)
    for p in points:
        for i, n in enumerate(p.bucket_counts):
            merged[i] += n
    return bounds, merged


def _quantile(bounds: tuple[float, ...], counts: list[int], q: float, top: float | None) -> float:
    total = sum(counts)
    rank = max(1, round(q * total + 0.5))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            edge = bounds[i] if i < len(bounds) else (top if top is not None else bounds[-1])
            return min(edge, top) if top is not None else edge
    return bounds[-1]  # pragma: no cover - rank <= total


def summarise_points(points: Sequence[MetricPoint]) -> HistogramSummary | None:
    """The merged histogram of delta `points` of one signal; None without any sample."""
    points = [p for p in points if p.count > 0]
    if not points:
        return None
    count = sum(p.count for p in points)
    total = sum(p.sum for p in points)
    lows = [p.min for p in points]
    highs = [p.max for p in points]
    low = min(v for v in lows if v is not None) if all(v is not None for v in lows) else None
    high = max(v for v in highs if v is not None) if all(v is not None for v in highs) else None
    merged = _merged_buckets(points)
    p50 = p95 = None
    if merged is not None and merged[0]:
        p50 = _quantile(merged[0], merged[1], 0.50, high)
        p95 = _quantile(merged[0], merged[1], 0.95, high)
    errors = sum(p.count for p in points if p.error)
    return HistogramSummary(count, total, total / count, low, high, p50, p95, errors)


def summaries_by_signal(points: Iterable[MetricPoint]) -> dict[str, HistogramSummary]:
    groups: dict[str, list[MetricPoint]] = {}
    for p in points:
        groups.setdefault(p.signal, []).append(p)
    out = {}
    for signal, items in sorted(groups.items()):
        summary = summarise_points(items)
        if summary is not None:
            out[signal] = summary
    return out


def arm_summary(points: Sequence[MetricPoint]) -> ArmSummary | None:
    """n, exact mean and bucket-midpoint variance of delta `points` of one signal; None when
    there is no sample or no buckets to estimate the variance from."""
    points = [p for p in points if p.count > 0]
    if not points:
        return None
    merged = _merged_buckets(points)
    if merged is None or not merged[0]:
        return None
    bounds, counts = merged
    n = sum(counts)
    mean = sum(p.sum for p in points) / n
    lows = [p.min for p in points]
    highs = [p.max for p in points]
    low = min(v for v in lows if v is not None) if all(v is not None for v in lows) else None
    high = max(v for v in highs if v is not None) if all(v is not None for v in highs) else None
    squares = 0.0
    for i, c in enumerate(counts):
        if not c:
            continue
        lower = bounds[i - 1] if i > 0 else (low if low is not None else bounds[0])
        upper = bounds[i] if i < len(bounds) else (high if high is not None else bounds[-1])
        mid = (min(lower, upper) + max(lower, upper)) / 2
        squares += c * (mid - mean) ** 2
    return ArmSummary(n, mean, squares / (n - 1) if n > 1 else 0.0)


def error_proportion(points: Sequence[MetricPoint]) -> ArmSummary | None:
    """The share of operations that failed, from `gen_ai.client.operation.duration` points."""
    total = sum(p.count for p in points)
    if not total:
        return None
    return ArmSummary.of_proportion(sum(p.count for p in points if p.error), total)
