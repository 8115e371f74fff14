"""Canary judgement from GenAI metric points (runtime.canary with runtime.metric_signals):
feedback and latency histograms decide when spans do not carry the metric, cumulative series
are differenced, intervals that began before the start or inside the warm-up do not count,
spans win over metrics, and a histogram without buckets cannot be tested."""

from __future__ import annotations

import random
from dataclasses import replace

from modelward.core.observations import MetricPoint, Observation
from modelward.runtime.canary import CanaryPlan, MetricSpec, judge, select_point_arms
from modelward.runtime.metric_signals import arm_summary, deltas

S = 1_000_000_000
START = 1_700_000_000 * S
BOUNDS = (1.0, 2.0, 3.0, 4.0)  # feedback scores 1..5, one per bucket


def plan(*metrics: str, **changes: object) -> CanaryPlan:
    base = CanaryPlan(
        model="m",
        environment="production",
        candidate_version=2,
        baseline_version=1,
        baseline_release_id="rel-1",
        started_ns=START,
        metrics=tuple(MetricSpec.parse(m) for m in metrics or ("feedback:0.1:0.2",)),
        min_samples=100,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def feedback_points(
    version: int,
    weights: list[float],
    intervals: int = 20,
    *,
    start: int = START + S,
    temporality: str = "delta",
    seed: int = 1,
    buckets: bool = True,
) -> list[MetricPoint]:
    """`intervals` exports of 50 scores each, drawn from 1..5 with `weights`."""
    rng = random.Random(seed * 10 + version)
    out: list[MetricPoint] = []
    counts = [0] * 5
    total = 0.0
    for i in range(intervals):
        if temporality == "delta":
            counts, total = [0] * 5, 0.0
        for _ in range(50):
            score = rng.choices(range(1, 6), weights)[0]
            counts[score - 1] += 1
            total += score
        begin = start if temporality == "cumulative" else start + i * 10 * S
        out.append(
            MetricPoint(
                model="m",
                version=version,
                release_id="rel-1",
                environment="production",
                arm=None,
                metric="modelward.feedback.score",
                token_type=None,
                error=False,
                temporality=temporality,
                series=f"feedback-{version}",
                start_unix_nano=begin,
                time_unix_nano=start + (i + 1) * 10 * S,
                count=sum(counts),
                sum=total,
                min=1.0 if temporality == "delta" else None,
                max=5.0 if temporality == "delta" else None,
                bounds=BOUNDS if buckets else (),
                bucket_counts=tuple(counts) if buckets else (),
            )
        )
    return out


GOOD, WORSE = [1, 1, 2, 6, 10], [4, 6, 6, 3, 1]


def test_worse_feedback_in_histograms_rolls_back() -> None:
    points = feedback_points(2, WORSE) + feedback_points(1, GOOD)
    verdict = judge(plan(), [], START + 10_000 * S, "rel-1", (), points)
    assert verdict.verdict == "rollback", verdict.reasons
    (result,) = verdict.metrics
    assert result.source == "modelward.feedback.score" and result.status == "degraded"
    assert result.n_canary == result.n_baseline == 1000
    assert verdict.counts["metric_points"]["canary"] == 20


def test_equal_feedback_is_promoted_and_no_points_is_inconclusive() -> None:
    points = feedback_points(2, GOOD, seed=2) + feedback_points(1, GOOD, seed=3)
    loose = plan("feedback:0.3:0.3")
    assert judge(loose, [], START + 10_000 * S, "rel-1", (), points).verdict == "promote"
    empty = judge(plan(), [], START + 10_000 * S, "rel-1", ())
    assert empty.verdict == "inconclusive" and empty.metrics[0].source == "spans"


def test_cumulative_series_are_differenced_and_the_interval_before_the_start_is_dropped() -> None:
    before = START - 5 * S  # the exporting process started before the canary
    points = feedback_points(2, WORSE, temporality="cumulative", start=before) + feedback_points(
        1, GOOD, temporality="cumulative", start=before
    )
    counted = select_point_arms(points, plan(), START + 10_000 * S)
    assert counted.dropped == {"before_start": 2}
    assert len(counted.canary) == len(counted.baseline) == 19
    assert all(p.count == 50 and p.min is None for p in counted.canary)
    verdict = judge(plan(), [], START + 10_000 * S, "rel-1", (), points)
    assert verdict.verdict == "rollback" and verdict.metrics[0].n_canary == 950


def test_points_inside_the_warmup_or_of_another_release_do_not_count() -> None:
    points = feedback_points(2, WORSE) + feedback_points(1, GOOD)
    points.append(replace(points[0], series="other", release_id="rel-9"))
    counted = select_point_arms(points, plan(warmup_s=100.0), START + 10_000 * S)
    assert counted.dropped == {"warmup": 20, "other_release": 1}


def test_spans_win_over_metric_points_when_both_arms_carry_the_metric() -> None:
    spans = [
        Observation(
            model="m",
            version=version,
            release_id="rel-1",
            environment="production",
            time_unix_nano=START + (i + 1) * S,
            trace_id=f"{i:031x}{version}",
            span_id=f"{i:015x}{version}",
            error=False,
            feedback=4.0 + (i % 3) * 0.1,
        )
        for i in range(200)
        for version in (1, 2)
    ]
    points = feedback_points(2, WORSE) + feedback_points(1, GOOD)
    verdict = judge(plan(), spans, START + 10_000 * S, "rel-1", (), points)
    assert verdict.metrics[0].source == "spans" and verdict.verdict == "promote"


def test_latency_and_errors_from_operation_duration_histograms() -> None:
    def duration(version: int, slow: float, errors: int, i: int) -> list[MetricPoint]:
        common = {
            "model": "m",
            "version": version,
            "release_id": "rel-1",
            "environment": "production",
            "arm": None,
            "metric": "gen_ai.client.operation.duration",
            "token_type": None,
            "temporality": "delta",
            "start_unix_nano": START + S + i * S,
            "time_unix_nano": START + 2 * S + i * S,
            "bounds": (0.5, 1.0, 2.0),
        }
        ok = MetricPoint(
            **common,  # type: ignore[arg-type]
            error=False,
            series=f"ok-{version}",
            count=100,
            sum=100 * slow,
            bucket_counts=(0, 100, 0, 0) if slow < 1 else (0, 0, 100, 0),
        )
        failed = MetricPoint(
            **common,  # type: ignore[arg-type]
            error=True,
            series=f"err-{version}",
            count=errors,
            sum=errors * 3.0,
            bucket_counts=(0, 0, 0, errors),
        )
        return [ok, failed] if errors else [ok]

    points = [p for i in range(10) for p in duration(2, 1.5, 10, i) + duration(1, 0.8, 0, i)]
    verdict = judge(plan("latency:10%", "error:0.01"), [], START + 10_000 * S, "rel-1", (), points)
    assert verdict.verdict == "rollback", verdict.reasons
    assert {m.spec.name: m.status for m in verdict.metrics} == {
        "latency": "degraded",
        "error": "degraded",
    }
    assert all(m.source == "gen_ai.client.operation.duration" for m in verdict.metrics)


def test_a_histogram_without_buckets_has_no_variance_and_is_not_tested() -> None:
    points = feedback_points(2, WORSE, buckets=False) + feedback_points(1, GOOD, buckets=False)
    assert arm_summary(deltas(points[:20])) is None
    verdict = judge(plan(), [], START + 10_000 * S, "rel-1", (), points)
    assert verdict.verdict == "inconclusive"
