"""Drift statistics (runtime.drift): PSI, Jensen-Shannon, Wasserstein and their thresholds."""

from __future__ import annotations

import math
import random

import pytest

from modelward.core.observations import Observation
from modelward.runtime.drift import (
    MIN_SAMPLES,
    categorical_drift,
    drift_report,
    js_of_shares,
    numeric_drift,
    psi_of_shares,
    wasserstein,
)


def test_formulas_on_known_values() -> None:
    p, q = [0.5, 0.5], [0.9, 0.1]
    assert psi_of_shares(p, q) == pytest.approx(0.4 * math.log(1.8) - 0.4 * math.log(0.2))
    assert js_of_shares(p, p) == 0.0
    assert 0 < js_of_shares(p, q) < 1
    assert js_of_shares([1e-9, 1.0], [1.0, 1e-9]) == pytest.approx(1.0, abs=1e-6)
    assert wasserstein([0.0, 1.0], [0.0, 1.0]) == 0.0
    assert wasserstein([0.0], [3.0]) == pytest.approx(3.0)
    assert wasserstein([0.0, 2.0], [1.0, 3.0]) == pytest.approx(1.0)


def test_same_distribution_is_ok_and_a_shift_drifts() -> None:
    rng = random.Random(4)
    base = [rng.lognormvariate(0, 0.4) for _ in range(2000)]
    same = [rng.lognormvariate(0, 0.4) for _ in range(2000)]
    slow = [1.5 * rng.lognormvariate(0, 0.4) for _ in range(2000)]
    assert numeric_drift("latency", base, same).status == "ok"
    drifted = numeric_drift("latency", base, slow)
    assert drifted.status == "drift" and "psi" in drifted.exceeded
    assert drifted.wasserstein_relative == pytest.approx(0.5, rel=0.15)


def test_insufficient_and_zero_baselines() -> None:
    assert numeric_drift("latency", [1.0] * 10, [1.0] * 500).status == "insufficient"
    assert numeric_drift("latency", [1.0] * 100, [1.0] * 100).status == "insufficient"
    zero = numeric_drift("output_tokens", [0.0] * 500, [0.0] * 500)
    assert zero.status == "ok" and zero.wasserstein_relative is None
    assert numeric_drift("x", [float("nan")] * 500, [1.0] * 500).status == "insufficient"


def test_finish_reasons_and_duplicates() -> None:
    base = ["stop"] * 475 + ["length"] * 25
    now = ["stop"] * 300 + ["length"] * 200
    assert categorical_drift("finish_reason", base, now, ["stop", "length"]).status == "drift"

    def obs(i: int, reason: str) -> Observation:
        return Observation(
            "m",
            1,
            "rel-1",
            "prod",
            i,
            f"{i:032x}",
            "01",
            False,
            duration_s=1.0,
            output_tokens=10,
            finish_reason=reason,
        )

    b = [obs(i, "stop") for i in range(MIN_SAMPLES)]
    c = [obs(10_000 + i, "length" if i % 2 else "stop") for i in range(MIN_SAMPLES)]
    report = {m.name: m for m in drift_report(b, c + c)}
    assert report["finish_reason"].n_current == MIN_SAMPLES  # duplicates counted once
    assert report["finish_reason"].status == "drift"
    assert report["latency"].status == "ok"


def test_identical_values_with_timestamp_jitter_do_not_drift() -> None:
    rng = random.Random(11)
    base = [0.1] * MIN_SAMPLES
    jittered = [(100_000_000 + rng.randint(-3, 3)) / 1e9 for _ in range(MIN_SAMPLES)]
    metric = numeric_drift("latency", base, jittered)
    assert metric.status == "ok" and metric.psi == 0.0 and metric.js == 0.0
    assert numeric_drift("latency", base, [0.1] * MIN_SAMPLES).psi == 0.0


@pytest.mark.parametrize(
    "draw",
    [
        lambda r: r.lognormvariate(0, 0.5),
        lambda r: r.lognormvariate(0, 1.0),
        lambda r: r.expovariate(1.0),
        lambda r: float(int(r.expovariate(1 / 200))),  # output tokens
    ],
    ids=["lognormal-0.5", "lognormal-1.0", "exponential", "tokens"],
)
def test_same_distribution_false_alarms_at_the_minimum_sample_are_at_most_5_percent(
    draw: object,
) -> None:
    rng = random.Random(2026)
    trials = 200
    alarms = 0
    for _ in range(trials):
        base = [draw(rng) for _ in range(MIN_SAMPLES)]  # type: ignore[operator]
        same = [draw(rng) for _ in range(MIN_SAMPLES)]  # type: ignore[operator]
        alarms += numeric_drift("x", base, same).status == "drift"
    assert alarms / trials <= 0.05


def test_same_finish_reason_shares_rarely_drift_at_the_minimum_sample() -> None:
    rng = random.Random(2026)
    categories = ["stop", "length", "tool_calls", "error"]
    weights = [0.9, 0.07, 0.02, 0.01]
    alarms = sum(
        categorical_drift(
            "finish_reason",
            rng.choices(categories, weights, k=MIN_SAMPLES),
            rng.choices(categories, weights, k=MIN_SAMPLES),
            categories,
        ).status
        == "drift"
        for _ in range(200)
    )
    assert alarms / 200 <= 0.05
