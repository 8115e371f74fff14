"""Canary judgement under continuous peeking: false rollbacks under A/A traffic and detection
delay for a real degradation, for modelward's test and two peers, on the same simulated streams.

Each stream is a canary run: after every batch (BATCH requests per arm) each method looks at the
data and may call a rollback; the first rollback ends the run. Two metrics are judged together:
refusals (Bernoulli, baseline 5 %) and latency (log-normal, mean 1 s, sigma 0.5).
Scenarios, on the same seeds: A/A (no difference), refusals +2 points, latency +20 %.

* modelward: `core.sequential` as `modelward canary judge` runs it, the one-sided mSPRT over the
  cumulative data (tolerance 0, effect 2 points and 10 %), Holm over the two metrics, alpha 0.05,
  minimum 100 per arm.
* Argo-style threshold rule (an AnalysisTemplate with `successCondition` per measurement): at
  each batch, the canary's windowed metric (last batch) against the baseline's with a margin
  (refusals +1 point, latency +10 %); `failureLimit: 2`, i.e. abort on the third failed
  measurement.
* Kayenta-style fixed window (NetflixACAJudge): at each batch, Mann-Whitney U (normal
  approximation with tie correction, implemented here) on the last fixed window of WINDOW
  batches, confidence 95 % two-sided, a metric fails when the canary is significantly higher;
  score = share of metrics passing; rollback when the score is below the marginal threshold 75.

Then the peers retuned to at most 5 % false rollbacks on the A/A streams (`calibrate`).

Prints, per method: false-rollback rate (A/A), detection rate within the horizon and median
detection delay (requests per arm) for each degradation, and ratios to modelward's.

    python benchmarks/bench_canary.py [--streams 400] [--batches 60] [--batch 100] [--seed 7]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable

import numpy as np
from numpy.typing import NDArray

from modelward.core.sequential import ArmSummary, compare, holm

ALPHA = 0.05
P_REFUSAL = 0.05
LAT_SIGMA = 0.5
LAT_MU = -0.5 * LAT_SIGMA**2  # mean exp(mu + sigma²/2) = 1 s
MIN_SAMPLES = 100
WINDOW = 3  # Kayenta: batches per fixed window

Array = NDArray[np.float64]
Method = Callable[["Streams"], NDArray[np.int64]]  # first rollback batch per stream, -1 none


class Streams:
    """Per-batch sums of one scenario: shape (streams, batches)."""

    def __init__(
        self,
        rng: np.random.Generator,
        streams: int,
        batches: int,
        batch: int,
        refusal_delta: float,
        latency_factor: float,
    ) -> None:
        shape = (streams, batches, batch)
        self.batch = batch
        self.ref_b = (rng.random(shape) < P_REFUSAL).astype(np.float64)
        self.ref_c = (rng.random(shape) < P_REFUSAL + refusal_delta).astype(np.float64)
        self.lat_b = rng.lognormal(LAT_MU, LAT_SIGMA, shape)
        self.lat_c = rng.lognormal(LAT_MU, LAT_SIGMA, shape) * latency_factor


def _cum(x: Array) -> tuple[Array, Array]:
    return np.cumsum(x.sum(axis=2), axis=1), np.cumsum((x * x).sum(axis=2), axis=1)


def modelward_method(s: Streams) -> NDArray[np.int64]:
    streams, batches = s.ref_b.shape[:2]
    rb, _ = _cum(s.ref_b)
    rc, _ = _cum(s.ref_c)
    lb, lb2 = _cum(s.lat_b)
    lc, lc2 = _cum(s.lat_c)
    first = np.full(streams, -1, dtype=np.int64)
    for i in range(streams):
        for k in range(batches):
            n = s.batch * (k + 1)
            if n < MIN_SAMPLES:
                continue
            refusal = compare(
                ArmSummary.of_proportion(int(rc[i, k]), n),
                ArmSummary.of_proportion(int(rb[i, k]), n),
                lower_is_better=True,
                threshold=0.0,
                tau=0.02,
            )
            base = _mean_var(lb[i, k], lb2[i, k], n)
            cand = _mean_var(lc[i, k], lc2[i, k], n)
            latency = compare(cand, base, lower_is_better=True, threshold=0.0, tau=0.1 * base.mean)
            if any(holm([refusal.p_degraded, latency.p_degraded], ALPHA)):
                first[i] = k
                break
    return first


def _mean_var(total: float, squares: float, n: int) -> ArmSummary:
    mean = total / n
    return ArmSummary(n, mean, max(squares - n * mean * mean, 0.0) / (n - 1))


def argo_method(s: Streams, failure_limit: int = 2) -> NDArray[np.int64]:
    ref_fail = s.ref_c.mean(axis=2) > s.ref_b.mean(axis=2) + 0.01
    lat_fail = s.lat_c.mean(axis=2) > s.lat_b.mean(axis=2) * 1.10
    failures = np.cumsum(ref_fail | lat_fail, axis=1)
    return _first(failures > failure_limit)


def _mann_whitney_z(c: Array, b: Array) -> Array:
    """z of the canary being larger, per row, with the tie-corrected normal approximation."""
    n1, n2 = c.shape[1], b.shape[1]
    both = np.concatenate([c, b], axis=1)
    n = n1 + n2
    order = np.argsort(both, axis=1, kind="stable")
    sorted_vals = np.take_along_axis(both, order, axis=1)
    ranks = np.empty_like(both)
    tie_term = np.zeros(both.shape[0])
    for row in range(both.shape[0]):
        vals = sorted_vals[row]
        starts = np.flatnonzero(np.r_[True, vals[1:] != vals[:-1]])
        ends = np.r_[starts[1:], n]
        avg = (starts + ends - 1) / 2.0 + 1.0
        sizes = (ends - starts).astype(np.float64)
        ranks[row, order[row]] = np.repeat(avg, ends - starts)
        tie_term[row] = float(np.sum(sizes**3 - sizes))
    u = ranks[:, :n1].sum(axis=1) - n1 * (n1 + 1) / 2.0
    var = n1 * n2 / 12.0 * ((n + 1) - tie_term / (n * (n - 1)))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (u - n1 * n2 / 2.0) / np.sqrt(var)
    return np.nan_to_num(z, nan=0.0)


def kayenta_z(s: Streams) -> Array:
    """Mann-Whitney z of each metric on each fixed window: shape (streams, batches, metrics)."""
    streams, batches, batch = s.ref_b.shape
    z = np.zeros((streams, batches, 2))
    for k in range(batches):
        lo = max(0, k + 1 - WINDOW)
        width = (k + 1 - lo) * batch
        for m, (cand, base) in enumerate(((s.ref_c, s.ref_b), (s.lat_c, s.lat_b))):
            c = cand[:, lo : k + 1].reshape(streams, width)
            b = base[:, lo : k + 1].reshape(streams, width)
            z[:, k, m] = _mann_whitney_z(c, b)
    return z


_Z_CACHE: dict[int, Array] = {}


def kayenta_method(s: Streams, z_crit: float = 1.959964) -> NDArray[np.int64]:
    """A metric fails when z > `z_crit` (1.96: confidence 95 % two-sided); rollback when the
    score (share of metrics passing) is below the marginal threshold 75."""
    if id(s) not in _Z_CACHE:
        _Z_CACHE[id(s)] = kayenta_z(s)
    z = _Z_CACHE[id(s)]
    passed = 2 - np.sum(z > z_crit, axis=2)
    return _first(100.0 * passed / 2 < 75.0)


def _first(mask: NDArray[np.bool_]) -> NDArray[np.int64]:
    hit = mask.any(axis=1)
    return np.where(hit, mask.argmax(axis=1), -1).astype(np.int64)


METHODS: dict[str, Method] = {
    "modelward mSPRT+Holm": modelward_method,
    "Argo-style threshold": argo_method,
    "Kayenta-style MW window": kayenta_method,
}


def calibrate(null: Streams) -> dict[str, Method]:
    """The peers retuned on the A/A streams themselves (in-sample, which favours them) to the
    mildest setting with at most 5 % false rollbacks: Argo's failureLimit, Kayenta's confidence."""
    limit = next((f for f in range(2, 61) if np.mean(argo_method(null, f) >= 0) <= ALPHA), 60)
    z = next(
        (
            z
            for z in np.arange(1.96, 6.0, 0.05)
            if np.mean(kayenta_method(null, float(z)) >= 0) <= ALPHA
        ),
        6.0,
    )
    return {
        f"Argo, failureLimit {limit}": lambda s: argo_method(s, limit),
        f"Kayenta, z > {float(z):.2f}": lambda s: kayenta_method(s, float(z)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=400)
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--batch", type=int, default=100, help="requests per arm per batch")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    scenarios = {"A/A": (0.0, 1.0), "refusals +2 pts": (0.02, 1.0), "latency +20 %": (0.0, 1.2)}
    started = time.perf_counter()
    all_streams = {
        scenario: Streams(
            np.random.default_rng(args.seed + index),
            args.streams,
            args.batches,
            args.batch,
            delta,
            factor,
        )
        for index, (scenario, (delta, factor)) in enumerate(scenarios.items())
    }
    methods = dict(METHODS)
    methods.update(calibrate(all_streams["A/A"]))
    results: dict[str, dict[str, NDArray[np.int64]]] = {m: {} for m in methods}
    for scenario, streams in all_streams.items():
        for name, method in methods.items():
            results[name][scenario] = method(streams)
    elapsed = time.perf_counter() - started
    horizon = args.batches * args.batch
    print(
        f"{args.streams} streams per scenario, a verdict after every batch of {args.batch} "
        f"requests per arm, horizon {horizon} per arm ({elapsed:.1f} s)"
    )
    header = (
        f"{'method':<28}{'false rollback A/A':>20}"
        f"{'refusal+2pt: found':>20}{'median delay':>14}"
        f"{'latency+20%: found':>20}{'median delay':>14}"
    )
    print(header)
    print("-" * len(header))
    delays: dict[str, dict[str, float]] = {}
    for name in methods:
        r = results[name]
        false_rate = float(np.mean(r["A/A"] >= 0))
        row = f"{name:<28}{false_rate:>19.1%} "
        delays[name] = {}
        for scenario in ("refusals +2 pts", "latency +20 %"):
            first = r[scenario]
            found = first >= 0
            delay = float(np.median((first[found] + 1) * args.batch)) if found.any() else math.inf
            delays[name][scenario] = delay
            row += f"{float(np.mean(found)):>19.1%} {delay:>13.0f}"
        print(row)
    ours = delays["modelward mSPRT+Holm"]
    print("\nmedian detection delay, ratio to modelward's (above 1: modelward detects sooner)")
    for name in methods:
        if name == "modelward mSPRT+Holm":
            continue
        ratios = ", ".join(
            f"{scenario}: {delays[name][scenario] / ours[scenario]:.2f}" for scenario in ours
        )
        print(f"  {name}: {ratios}")


if __name__ == "__main__":
    main()
