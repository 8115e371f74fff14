"""The always-valid one-sided mSPRT and Holm's correction (core.sequential)."""

from __future__ import annotations

import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelward.core.sequential import (
    AlwaysValidP,
    ArmSummary,
    compare,
    holm,
    holm_adjusted,
    log_mixture_ratio,
    normal_cdf,
)


def _peeking_false_positive_rate(
    rng: random.Random, runs: int, looks: int, batch: int, p: float, tau: float, alpha: float
) -> float:
    """Share of A/A runs (two Bernoulli(p) arms) where any look rejects H0: d <= 0."""
    hits = 0
    for _ in range(runs):
        xc = xb = n = 0
        for _look in range(looks):
            n += batch
            xc += sum(rng.random() < p for _ in range(batch))
            xb += sum(rng.random() < p for _ in range(batch))
            c = compare(
                ArmSummary.of_proportion(xc, n),
                ArmSummary.of_proportion(xb, n),
                lower_is_better=True,
                threshold=0.0,
                tau=tau,
            )
            if c.p_degraded <= alpha:
                hits += 1
                break
    return hits / runs


def test_mixture_ratio_matches_numerical_integration() -> None:
    s, v, tau = 0.013, 0.0001, 0.02
    # ∫_0^∞ exp(u s / v − u² / 2v) · 2 φ(u; 0, τ) du, by the trapezoid rule
    steps, top = 20000, 10 * tau
    total = 0.0
    for i in range(steps + 1):
        u = top * i / steps
        weight = 0.5 if i in (0, steps) else 1.0
        prior = 2 * math.exp(-u * u / (2 * tau * tau)) / (tau * math.sqrt(2 * math.pi))
        total += weight * math.exp(u * s / v - u * u / (2 * v)) * prior
    total *= top / steps
    assert math.exp(log_mixture_ratio(s, v, tau)) == pytest.approx(total, rel=1e-4)


def test_far_tail_stays_finite() -> None:
    assert math.isfinite(log_mixture_ratio(-50.0, 1e-4, 0.02))
    assert log_mixture_ratio(-50.0, 1e-4, 0.02) < 0
    assert normal_cdf(0.0) == 0.5


@settings(max_examples=6, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    p=st.sampled_from([0.02, 0.05, 0.2]),
    tau=st.sampled_from([0.01, 0.02, 0.05]),
)
def test_false_positive_rate_under_continuous_peeking_stays_below_alpha(
    seed: int, p: float, tau: float
) -> None:
    alpha = 0.1
    rate = _peeking_false_positive_rate(random.Random(seed), 150, 25, 60, p, tau, alpha)
    # 150 runs: 3 binomial standard errors above alpha still fails a broken test (naive peeking
    # of a z-test at 25 looks rejects 30-40 % of these runs)
    assert rate <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / 150)


def test_naive_peeking_would_fail_the_same_check() -> None:
    """The check above can fail: a fixed-sample z-test peeked at every batch does."""
    rng = random.Random(3)
    hits = 0
    for _ in range(150):
        xc = xb = n = 0
        for _look in range(25):
            n += 60
            xc += sum(rng.random() < 0.05 for _ in range(60))
            xb += sum(rng.random() < 0.05 for _ in range(60))
            pooled = (xc + xb) / (2 * n)
            se = math.sqrt(max(pooled * (1 - pooled) * 2 / n, 1e-12))
            if (xc - xb) / n / se > 1.2816:  # one-sided 10 %
                hits += 1
                break
    assert hits / 150 > 0.1 + 3 * math.sqrt(0.09 / 150)


def test_a_real_degradation_is_detected_and_non_inferiority_is_shown() -> None:
    rng = random.Random(11)
    n = 4000
    bad = compare(
        ArmSummary.of_proportion(sum(rng.random() < 0.09 for _ in range(n)), n),
        ArmSummary.of_proportion(sum(rng.random() < 0.05 for _ in range(n)), n),
        lower_is_better=True,
        threshold=0.0,
        tau=0.02,
    )
    assert bad.p_degraded < 0.001 and bad.p_non_inferior == 1.0
    same = compare(
        ArmSummary.of_proportion(200, n),
        ArmSummary.of_proportion(200, n),
        lower_is_better=True,
        threshold=0.02,
        tau=0.02,
    )
    assert same.p_non_inferior < 0.01 and same.p_degraded == 1.0


def test_direction_higher_is_better() -> None:
    worse = compare(
        ArmSummary(1000, 3.0, 1.0),
        ArmSummary(1000, 4.0, 1.0),
        lower_is_better=False,
        threshold=0.0,
        tau=0.5,
    )
    assert worse.degradation == pytest.approx(1.0)
    assert worse.p_degraded < 1e-6


def test_zero_baseline_and_constant_data_have_positive_variance() -> None:
    zero = ArmSummary.of_proportion(0, 500)
    assert zero.mean == 0.0 and zero.variance > 0
    c = compare(zero, zero, lower_is_better=True, threshold=0.0, tau=0.01)
    assert c.variance > 0 and math.isfinite(c.p_degraded)
    constant = ArmSummary.of([2.0] * 50)
    c2 = compare(constant, constant, lower_is_better=True, threshold=0.0, tau=0.1)
    assert c2.variance > 0 and c2.p_degraded == 1.0


def test_summary_skips_nan_and_infinities() -> None:
    s = ArmSummary.of([1.0, float("nan"), 3.0, float("inf")])
    assert (s.n, s.mean, s.variance) == (2, 2.0, 2.0)
    with pytest.raises(ValueError):
        compare(ArmSummary.of([]), s, lower_is_better=True, threshold=0, tau=1)
    with pytest.raises(ValueError):
        ArmSummary.of_proportion(5, 3)


def test_running_minimum() -> None:
    p = AlwaysValidP()
    assert p.update(0.5) == 0.5
    assert p.update(0.7) == 0.5
    assert p.update(float("nan")) == 0.5


def test_holm_step_down() -> None:
    assert holm([0.01, 0.04, 0.03], 0.05) == [True, False, False]
    assert holm([0.01, 0.02, 0.03], 0.05) == [True, True, True]
    assert holm([0.2, 0.01], 0.05) == [False, True]
    assert holm([float("nan"), 0.02], 0.05) == [False, True]
    assert holm([], 0.05) == []
    assert holm_adjusted([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


@settings(max_examples=4, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), sigma=st.sampled_from([0.2, 0.6]))
def test_means_with_estimated_variance_under_continuous_peeking(seed: int, sigma: float) -> None:
    """A/A latencies (log-normal, skewed), variance estimated by plug-in at every look."""
    rng = random.Random(seed)
    alpha, runs, hits = 0.1, 120, 0
    for _ in range(runs):
        sums = [[0.0, 0.0], [0.0, 0.0]]  # (sum, sum of squares) per arm
        n = 0
        for _look in range(20):
            n += 40
            for arm in sums:
                for _ in range(40):
                    x = rng.lognormvariate(0, sigma)
                    arm[0] += x
                    arm[1] += x * x
            cand, base = (ArmSummary(n, t / n, (q - t * t / n) / (n - 1)) for t, q in sums)
            result = compare(cand, base, lower_is_better=True, threshold=0.0, tau=0.1 * base.mean)
            if result.p_degraded <= alpha:
                hits += 1
                break
    assert hits / runs <= alpha + 3 * math.sqrt(alpha * (1 - alpha) / runs)
