"""Canary judgement guards (runtime.canary): which requests count, and the verdict."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from modelward.core.observations import Observation
from modelward.errors import InputError
from modelward.runtime.canary import CanaryPlan, MetricSpec, judge, select_arms

S = 1_000_000_000
START = 1_700_000_000 * S


def plan(**changes: object) -> CanaryPlan:
    base = CanaryPlan(
        model="m",
        environment="production",
        candidate_version=2,
        baseline_version=1,
        baseline_release_id="rel-1",
        started_ns=START,
        metrics=(MetricSpec.parse("refusal:0"), MetricSpec.parse("latency:0%")),
        min_samples=50,
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def stream(
    n: int,
    *,
    seed: int = 1,
    refusal: tuple[float, float] = (0.05, 0.05),
    latency: tuple[float, float] = (1.0, 1.0),
    start: int = START + S,
    arm_label: bool = True,
) -> list[Observation]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for arm, version, k in (("canary", 2, 0), ("baseline", 1, 1)):
            out.append(
                Observation(
                    model="m",
                    version=version,
                    release_id="rel-1",
                    environment="production",
                    time_unix_nano=start + i * S // 10,
                    trace_id=f"{i:016x}{k}",
                    span_id=f"{i:08x}{k}",
                    error=False,
                    duration_s=rng.lognormvariate(0, 0.3) * latency[k],
                    refusal=rng.random() < refusal[k],
                    arm=arm if arm_label else None,
                )
            )
    return out


NOW = START + 10_000 * S


def test_empty_baseline_is_inconclusive() -> None:
    obs = [o for o in stream(500) if o.arm == "canary"]
    v = judge(plan(), obs, NOW, "rel-1")
    assert v.verdict == "inconclusive"
    assert any("baseline arm" in r for r in v.reasons)
    assert judge(plan(), [], NOW, "rel-1").verdict == "inconclusive"


def test_one_sided_data_too_few_in_one_arm_holds() -> None:
    obs = stream(2000, refusal=(0.5, 0.0))
    few_canary = [o for o in obs if o.arm == "baseline"] + [o for o in obs if o.arm == "canary"][
        :10
    ]
    v = judge(plan(), few_canary, NOW, "rel-1")
    assert v.verdict == "inconclusive"
    assert any("fewer than the minimum 50" in r for r in v.reasons)


def test_a_real_degradation_rolls_back_and_aa_does_not() -> None:
    bad = judge(plan(), stream(3000, refusal=(0.12, 0.05)), NOW, "rel-1")
    assert bad.verdict == "rollback"
    assert bad.to_dict()["metrics"][0]["status"] == "degraded"
    slow = judge(plan(), stream(2000, latency=(1.3, 1.0)), NOW, "rel-1")
    assert slow.verdict == "rollback"
    same = judge(plan(), stream(3000), NOW, "rel-1")
    assert same.verdict in ("continue", "inconclusive", "promote")
    assert same.verdict != "rollback"


def test_within_tolerance_is_promoted() -> None:
    p = plan(metrics=(MetricSpec.parse("refusal:0.05"), MetricSpec.parse("latency:20%")))
    v = judge(p, stream(3000), NOW, "rel-1")
    assert v.verdict == "promote", v.reasons


def test_zero_baseline_proportion_and_relative_tolerance_of_zero() -> None:
    zero = stream(800, refusal=(0.0, 0.0))
    v = judge(plan(metrics=(MetricSpec.parse("refusal:0.02"),)), zero, NOW, "rel-1")
    assert v.verdict == "promote"
    v2 = judge(plan(metrics=(MetricSpec.parse("refusal:10%"),)), zero, NOW, "rel-1")
    assert v2.verdict == "inconclusive"
    assert "zero baseline" in v2.reasons[0]


def test_nan_is_refused_at_the_edge_and_missing_values_are_not_zero() -> None:
    with pytest.raises(ValueError):
        replace(stream(1)[0], duration_s=float("nan"))
    obs = [replace(o, duration_s=None) if o.arm == "baseline" else o for o in stream(300)]
    v = judge(plan(metrics=(MetricSpec.parse("latency:0%"),)), obs, NOW, "rel-1")
    assert v.verdict == "inconclusive"


def test_warm_up_spikes_are_ignored() -> None:
    spikes = [
        replace(o, duration_s=30.0, time_unix_nano=START + (i % 50) * S // 10)
        for i, o in enumerate(stream(200, seed=5))
        if o.arm == "canary"
    ]
    spikes = [replace(o, trace_id="f" + o.trace_id) for o in spikes]
    steady = stream(1500, start=START + 60 * S)
    judged = judge(plan(warmup_s=30), spikes + steady, NOW, "rel-1")
    assert judged.verdict != "rollback"
    assert judged.counts["dropped"]["warmup"] == len(spikes)
    assert judge(plan(warmup_s=0), spikes + steady, NOW, "rel-1").verdict == "rollback"


def test_late_and_duplicated_spans() -> None:
    obs = stream(1000, refusal=(0.15, 0.05))
    late_first = list(reversed(obs))  # ingestion order does not matter
    dup = late_first + obs[:500]
    v = judge(plan(), dup, NOW, "rel-1")
    assert v.counts["canary"] == 1000 and v.counts["baseline"] == 1000
    assert v.counts["dropped"]["duplicate"] == 500
    assert v.verdict == "rollback"
    before = [replace(o, time_unix_nano=START - S) for o in stream(10, seed=9)]
    future = [
        replace(o, time_unix_nano=NOW + 3600 * S, trace_id="e" + o.trace_id)
        for o in stream(10, seed=9)
    ]
    arms = select_arms(before + future, plan(), NOW)
    assert arms.dropped == {"before_start": 20, "future": 20}


def test_release_that_changes_mid_window() -> None:
    obs = stream(1000, refusal=(0.2, 0.05))
    other = [
        replace(o, release_id="rel-7", trace_id="a" + o.trace_id) for o in stream(1000, seed=3)
    ]
    v = judge(plan(), obs + other, NOW, "rel-7")
    assert v.verdict == "inconclusive"
    assert "rel-7" in v.reasons[0] and "start a new canary" in v.reasons[0]
    assert v.counts["dropped"]["other_release"] == 2000


def test_arm_must_agree_with_the_version() -> None:
    obs = stream(100)
    liar = [replace(o, arm="baseline") for o in obs if o.version == 2]
    arms = select_arms(liar, plan(), NOW)
    assert arms.canary == () and arms.baseline == ()
    assert arms.dropped["unattributed"] == 100
    unlabelled = select_arms(stream(100, arm_label=False), plan(), NOW)
    assert len(unlabelled.canary) == len(unlabelled.baseline) == 100


def test_metric_specs() -> None:
    m = MetricSpec.parse("latency:10%:5%")
    assert (m.tolerance, m.tolerance_relative, m.effect) == (pytest.approx(0.1), True, 0.05)
    assert MetricSpec.from_dict(m.to_dict()) == m
    assert MetricSpec.parse("feedback:0.1").lower_is_better is False
    assert MetricSpec.parse("refusal:higher:0").lower_is_better is False
    for bad in ("nope:1", "refusal:x", "refusal:-1", "refusal:1:0", "refusal:1:2:3"):
        with pytest.raises(InputError):
            MetricSpec.parse(bad)
    with pytest.raises(InputError):
        plan(candidate_version=1)
    with pytest.raises(InputError):
        plan(metrics=(MetricSpec.parse("refusal"), MetricSpec.parse("refusal:1")))


def test_overflowing_statistics_make_the_metric_inconclusive_not_a_rollback() -> None:
    from modelward.core.canonical import canonical_json

    obs = stream(600, refusal=(0.5, 0.0))  # refusal would roll back on its own
    huge = [
        replace(o, duration_s=1e308 if i % 4 == 0 else 1.0) if o.arm == "canary" else o
        for i, o in enumerate(obs)  # canary and baseline alternate: every other canary is huge
    ]
    only_latency = plan(metrics=(MetricSpec.parse("latency:0%"),))
    v = judge(only_latency, huge, NOW, "rel-1")
    assert v.verdict == "inconclusive", v.reasons
    assert "not a finite number" in v.reasons[0]
    canonical_json(v.to_dict())  # signable: nothing NaN or infinite in it
    both = judge(plan(), huge, NOW, "rel-1")  # the refusal degradation still counts
    assert both.verdict == "rollback"
    canonical_json(both.to_dict())
