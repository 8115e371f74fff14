"""Always-valid one-sided sequential tests for canary judgement (mSPRT), and Holm's correction.

Pure arithmetic on summary statistics: no I/O, no clock, no randomness. The caller may look at
the result after every batch of requests ("continuous peeking") without inflating the error
rate, because the p-values are always valid (Johari, Koomen, Pekelis, Walsh, "Always valid
inference: continuous monitoring of A/B tests", Operations Research 2022).

The model. An arm's samples have mean `m` and variance `s²`; the difference of the two arms'
means, oriented so that positive is worse for the candidate, is

    d̂ = sign · (m_candidate − m_baseline),        V = s²_c / n_c + s²_b / n_b

with `sign` +1 when lower is better (latency, refusals) and −1 when higher is better. By the
central limit theorem d̂ ~ N(d, V) (the Gaussian approximation of Johari et al., section 4,
with the variances estimated by plug-in).

The test. For a threshold θ₀ (the tolerated degradation) we test H0: d ≤ θ₀ against
H1: d > θ₀ with the one-sided mixture likelihood ratio over a half-normal prior of scale τ on
d − θ₀ > 0. With S = d̂ − θ₀ it has the closed form

    Λ = 2 · sqrt(V / (V + τ²)) · exp(S² τ² / (2 V (V + τ²))) · Φ(S τ / sqrt(V (V + τ²)))

Each likelihood ratio L(θ)/L(θ₀) with θ > θ₀ is a non-negative supermartingale under every
d ≤ θ₀, hence so is their mixture, and Ville's inequality gives P(sup_n Λ_n ≥ 1/α) ≤ α. The
always-valid p-value is p_n = min(1, min_{k ≤ n} 1/Λ_k); the caller keeps the running minimum
(`AlwaysValidP`). The non-inferiority test (H0: d ≥ θ₀ against H1: d < θ₀) is the same with
S = θ₀ − d̂.

Proportions use the same form with s² = p(1 − p), each arm's p smoothed as (x + ½)/(n + 1) so
that an arm with no events (a zero baseline) still has a positive variance; means use the
sample variance (with a floor of `VARIANCE_FLOOR`, relative to the squared mean, for constant
data). Holm's step-down procedure (`holm`) controls the family-wise error across metrics.

What this does not do: it does not decide which samples belong to which arm, drop warm-up or
duplicated requests, or read metrics; `modelward.runtime.canary` does.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

VARIANCE_FLOOR = 1e-12


def normal_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


@dataclass(frozen=True)
class ArmSummary:
    """n samples of one arm: their mean and (unbiased) variance."""

    n: int
    mean: float
    variance: float

    @classmethod
    def of(cls, values: Iterable[float]) -> ArmSummary:
        """Summary of the finite values; NaN and infinities are not samples and are skipped."""
        n, mean, m2 = 0, 0.0, 0.0
        for raw in values:
            x = float(raw)
            if not math.isfinite(x):
                continue
            n += 1
            delta = x - mean
            mean += delta / n
            m2 += delta * (x - mean)
        return cls(n, mean if n else 0.0, m2 / (n - 1) if n > 1 else 0.0)

    @classmethod
    def of_proportion(cls, events: int, n: int) -> ArmSummary:
        """`events` successes in `n` Bernoulli trials, with the smoothed variance p(1 − p)."""
        if n < 0 or events < 0 or events > n:
            raise ValueError(f"a proportion needs 0 <= events <= n, got {events} of {n}")
        smoothed = (events + 0.5) / (n + 1)
        return cls(n, events / n if n else 0.0, smoothed * (1.0 - smoothed))


def log_mixture_ratio(s: float, v: float, tau: float) -> float:
    """log Λ of the one-sided half-normal mixture (module docstring) for S = `s`, V = `v`."""
    if v <= 0 or tau <= 0:
        raise ValueError("the variance and the mixing scale must be positive")
    total = v + tau * tau
    z = s * tau / math.sqrt(v * total)
    return (
        math.log(2.0)
        + 0.5 * math.log(v / total)
        + s * s * tau * tau / (2.0 * v * total)
        + _log_normal_cdf(z)
    )


def _log_normal_cdf(z: float) -> float:
    if z > -30:
        return math.log(max(normal_cdf(z), 1e-300))
    # asymptotic tail: log Φ(z) ≈ −z²/2 − log(−z) − log √(2π)
    return -0.5 * z * z - math.log(-z) - 0.5 * math.log(2 * math.pi)


def one_sided_p(s: float, v: float, tau: float) -> float:
    """1/Λ, capped at 1: the always-valid p-value at this look (before the running minimum)."""
    log_lambda = log_mixture_ratio(s, v, tau)
    return 1.0 if log_lambda <= 0 else math.exp(-log_lambda)


@dataclass(frozen=True)
class Comparison:
    """One metric's comparison at one look: the oriented difference and both always-valid
    p-values at this look (not yet minimised over looks)."""

    degradation: float  # d̂, positive is worse for the candidate
    variance: float  # V
    threshold: float  # θ₀, the tolerated degradation
    p_degraded: float  # H0: d <= θ₀ (small: degraded beyond tolerance)
    p_non_inferior: float  # H0: d >= θ₀ (small: shown within tolerance)


def compare(
    candidate: ArmSummary,
    baseline: ArmSummary,
    *,
    lower_is_better: bool,
    threshold: float,
    tau: float,
) -> Comparison:
    """Both one-sided tests of the degradation against `threshold` with mixing scale `tau`."""
    if candidate.n < 1 or baseline.n < 1:
        raise ValueError("both arms need at least one sample")
    sign = 1.0 if lower_is_better else -1.0
    d = sign * (candidate.mean - baseline.mean)
    scale = max(abs(candidate.mean), abs(baseline.mean), 1.0)
    floor = VARIANCE_FLOOR * scale * scale
    v = max(candidate.variance, floor) / candidate.n + max(baseline.variance, floor) / baseline.n
    return Comparison(
        degradation=d,
        variance=v,
        threshold=threshold,
        p_degraded=one_sided_p(d - threshold, v, tau),
        p_non_inferior=one_sided_p(threshold - d, v, tau),
    )


class AlwaysValidP:
    """The running minimum of a sequence of always-valid p-values (the valid p-value at any
    stopping time). Mutable on purpose: one per metric per test, fed after each look."""

    def __init__(self, value: float = 1.0) -> None:
        self.value = value

    def update(self, p: float) -> float:
        if not math.isnan(p):
            self.value = min(self.value, p)
        return self.value


def holm(p_values: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down: which hypotheses are rejected at family-wise level `alpha`.

    Sort ascending; reject p_(i) while p_(i) <= alpha / (m − i) (i from 0), stop at the first
    that is not. A NaN p-value is never rejected and still counts in m."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: math.inf if math.isnan(p_values[i]) else p_values[i])
    rejected = [False] * m
    for rank, index in enumerate(order):
        p = p_values[index]
        if math.isnan(p) or p > alpha / (m - rank):
            break
        rejected[index] = True
    return rejected


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values: max over the sorted prefix of (m − i) · p_(i), capped at 1."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: math.inf if math.isnan(p_values[i]) else p_values[i])
    adjusted = [1.0] * m
    running = 0.0
    for rank, index in enumerate(order):
        p = p_values[index]
        value = 1.0 if math.isnan(p) else min(1.0, (m - rank) * p)
        running = max(running, value)
        adjusted[index] = running
    return adjusted
