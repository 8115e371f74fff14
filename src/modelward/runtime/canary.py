"""Canary and shadow judgement over served requests: which request counts for which arm, and the
verdict.

Pure: takes `Observation`s, a `CanaryPlan` and the present time (nanoseconds), returns a
`Verdict`. The statistics are `modelward.core.sequential` (one-sided mSPRT, Holm). What this
module decides, and documents, is the guarding:

* a request counts once: duplicates of (trace_id, span_id) are dropped (the first, in time
  order, is kept);
* a request counts only for this canary: same model and environment, served by the baseline
  release the canary was started on (`release_id`, when the span carries it); served by the
  candidate version (arm `canary`) or the baseline version (arm `baseline`); a span whose arm
  contradicts its version is dropped, not guessed;
* a request before the canary started, inside the warm-up (`warmup_s` after the start), or in the
  future (more than `MAX_CLOCK_SKEW_NS` past `now`) does not count; a late span (ingested after
  later ones) counts at its own end time;
* a metric is judged only with at least `min_samples` observed values in each arm; "no data or
  one arm empty" is `inconclusive` (hold), and so is a relative tolerance on a zero baseline and
  a metric whose statistics overflow (a mean, variance or p-value that is not finite: fail
  closed, no rollback or promotion decided from NaN);
* when the environment's release is no longer the one the canary was started on (a release
  changed mid-window) the verdict is `inconclusive` and names both releases.

Metric points (OTLP GenAI histograms, `runtime.metric_signals`) stand in for a metric the spans
do not carry in both arms: `latency` from `gen_ai.client.operation.duration` (else
`gen_ai.server.request.duration`), `ttft`, `tpot`, `output_tokens` (token usage, output) and
`feedback` (`modelward.feedback.score`) from their histograms, `error` from the share of
operation-duration points with `error.type`. The same guards apply to a point's whole interval
(after cumulative points are differenced): it counts only if it starts after the warm-up. A
metric is judged from spans or from one metric signal, never a mix; its result names the
source. From histograms the mean is exact and the variance a bucket-midpoint estimate.

Verdict rule, with K metrics and family-wise level alpha (Holm over all K, an untestable metric
counting in K with p = 1):
`rollback` if some metric's degradation beyond tolerance is Holm-significant; otherwise
`inconclusive` if some metric cannot be tested; otherwise `promote` if every metric is shown
non-inferior (degradation below tolerance) with Holm significance; otherwise `continue`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelward.core.observations import MetricPoint, Observation
from modelward.core.sequential import ArmSummary, compare, holm, holm_adjusted
from modelward.errors import InputError
from modelward.runtime.canary_metrics import (
    DEFAULT_METRICS,
    METRICS,
    MetricKind,
    MetricSpec,
)
from modelward.runtime.metric_signals import arm_summary, deltas, error_proportion

__all__ = [  # the catalogue is re-exported: callers name it from here
    "DEFAULT_METRICS",
    "METRICS",
    "Arms",
    "CanaryPlan",
    "MetricKind",
    "MetricResult",
    "MetricSpec",
    "PointArms",
    "Verdict",
    "judge",
    "select_arms",
    "select_point_arms",
]

VERDICTS = ("continue", "promote", "rollback", "inconclusive")
MAX_CLOCK_SKEW_NS = 60 * 1_000_000_000
MIN_WATCH_S, MAX_WATCH_S = 1.0, 86_400.0
CANDIDATE, BASELINE = "canary", "baseline"


@dataclass(frozen=True)
class CanaryPlan:
    model: str
    environment: str
    candidate_version: int
    baseline_version: int
    baseline_release_id: str
    started_ns: int
    metrics: tuple[MetricSpec, ...]
    alpha: float = 0.05
    min_samples: int = 100
    warmup_s: float = 0.0
    watch_s: float | None = None  # a server judges (and acts) every watch_s seconds

    def __post_init__(self) -> None:
        if not 0 < self.alpha < 1:
            raise InputError(f"alpha must be in (0, 1), got {self.alpha}")
        if self.min_samples < 1:
            raise InputError("the minimum sample per arm must be at least 1")
        if not math.isfinite(self.warmup_s) or self.warmup_s < 0:
            raise InputError("the warm-up must be a finite number of seconds >= 0")
        if self.watch_s is not None and not (
            math.isfinite(self.watch_s) and MIN_WATCH_S <= self.watch_s <= MAX_WATCH_S
        ):
            raise InputError(
                f"the watch interval must be {MIN_WATCH_S:g} to {MAX_WATCH_S:g} seconds"
            )
        if not self.metrics:
            raise InputError("a canary judges at least one metric")
        names = [m.name for m in self.metrics]
        if len(set(names)) != len(names):
            raise InputError(f"a metric is named twice: {', '.join(names)}")
        if self.candidate_version == self.baseline_version:
            raise InputError("the candidate and the baseline are the same version")

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "environment": self.environment,
            "candidate_version": self.candidate_version,
            "baseline_version": self.baseline_version,
            "baseline_release_id": self.baseline_release_id,
            "started_ns": str(self.started_ns),  # beyond JSON's safe integers
            "metrics": [m.to_dict() for m in self.metrics],
            "alpha": self.alpha,
            "min_samples": self.min_samples,
            "warmup_s": self.warmup_s,
            # only when set: the plans of canaries started before watching existed stay as
            # they were recorded
            **({"watch_s": self.watch_s} if self.watch_s is not None else {}),
        }


@dataclass(frozen=True)
class Arms:
    canary: tuple[Observation, ...]
    baseline: tuple[Observation, ...]
    dropped: dict[str, int] = field(default_factory=dict)

    def counts(self) -> dict[str, Any]:
        return {"canary": len(self.canary), "baseline": len(self.baseline), "dropped": self.dropped}


def select_arms(
    observations: Iterable[Observation],
    plan: CanaryPlan,
    now_ns: int,
    accepted_releases: Iterable[str] = (),
) -> Arms:
    """The requests that count for each arm, and how many were dropped for which reason.

    A span naming a release counts only if it is the baseline release or one of
    `accepted_releases` (the candidate's releases in the environment since the start)."""
    dropped: dict[str, int] = {}
    releases = {plan.baseline_release_id, *accepted_releases}

    def drop(reason: str) -> None:
        dropped[reason] = dropped.get(reason, 0) + 1

    seen: set[tuple[str, str]] = set()
    arms: dict[str, list[Observation]] = {CANDIDATE: [], BASELINE: []}
    warm_until = plan.started_ns + int(plan.warmup_s * 1e9)
    ordered = sorted(observations, key=lambda o: (o.time_unix_nano, o.trace_id, o.span_id))
    for o in ordered:
        key = (o.trace_id, o.span_id)
        if key in seen:
            drop("duplicate")
            continue
        seen.add(key)
        if o.model != plan.model or (o.environment not in (None, plan.environment)):
            drop("other_model_or_environment")
        elif o.release_id is not None and o.release_id not in releases:
            drop("other_release")
        elif o.time_unix_nano < plan.started_ns:
            drop("before_start")
        elif o.time_unix_nano > now_ns + MAX_CLOCK_SKEW_NS:
            drop("future")
        elif o.time_unix_nano < warm_until:
            drop("warmup")
        else:
            arm = _arm_of(o, plan)
            if arm is None:
                drop("unattributed")
            else:
                arms[arm].append(o)
    return Arms(tuple(arms[CANDIDATE]), tuple(arms[BASELINE]), dropped)


@dataclass(frozen=True)
class PointArms:
    canary: tuple[MetricPoint, ...]
    baseline: tuple[MetricPoint, ...]
    dropped: dict[str, int] = field(default_factory=dict)


def select_point_arms(
    points: Iterable[MetricPoint],
    plan: CanaryPlan,
    now_ns: int,
    accepted_releases: Iterable[str] = (),
) -> PointArms:
    """The metric points (as deltas) that count for each arm, guarded like `select_arms` over
    each point's whole interval."""
    dropped: dict[str, int] = {}
    releases = {plan.baseline_release_id, *accepted_releases}
    arms: dict[str, list[MetricPoint]] = {CANDIDATE: [], BASELINE: []}
    warm_until = plan.started_ns + int(plan.warmup_s * 1e9)
    for p in deltas(points):
        reason = None
        if p.model != plan.model or (p.environment not in (None, plan.environment)):
            reason = "other_model_or_environment"
        elif p.release_id is not None and p.release_id not in releases:
            reason = "other_release"
        elif p.start_unix_nano < plan.started_ns:
            reason = "before_start"
        elif p.time_unix_nano > now_ns + MAX_CLOCK_SKEW_NS:
            reason = "future"
        elif p.start_unix_nano < warm_until:
            reason = "warmup"
        elif (arm := _arm_of(p, plan)) is None:
            reason = "unattributed"
        else:
            arms[arm].append(p)
        if reason is not None:
            dropped[reason] = dropped.get(reason, 0) + 1
    return PointArms(tuple(arms[CANDIDATE]), tuple(arms[BASELINE]), dropped)


def _from_points(kind: MetricKind, arms: PointArms) -> tuple[ArmSummary, ArmSummary, str] | None:
    """Both arms' summaries from the first metric signal of `kind` both arms carry."""
    for signal in kind.signals:
        found = []
        for points in (arms.canary, arms.baseline):
            mine = [p for p in points if p.signal == signal]
            found.append(error_proportion(mine) if kind.proportion else arm_summary(mine))
        canary, baseline = found
        if canary is not None and baseline is not None:
            return canary, baseline, signal
    return None


def _arm_of(o: Observation | MetricPoint, plan: CanaryPlan) -> str | None:
    by_version = (
        CANDIDATE
        if o.version == plan.candidate_version
        else BASELINE
        if o.version == plan.baseline_version
        else None
    )
    if o.arm is None:
        return by_version
    if o.arm in (CANDIDATE, BASELINE) and o.arm == by_version:
        return o.arm
    return None  # shadow traffic, or an arm that contradicts the version that served it


@dataclass(frozen=True)
class MetricResult:
    spec: MetricSpec
    status: str  # degraded, non_inferior, undecided, insufficient
    n_canary: int
    n_baseline: int
    canary_mean: float | None = None
    baseline_mean: float | None = None
    degradation: float | None = None
    threshold: float | None = None
    p_degraded: float = 1.0
    p_non_inferior: float = 1.0
    p_degraded_holm: float = 1.0
    p_non_inferior_holm: float = 1.0
    reason: str = ""
    source: str = "spans"  # or the metric signal it was judged from

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.spec.name,
            "source": self.source,
            "spec": self.spec.spec_text(),
            "status": self.status,
            "n_canary": self.n_canary,
            "n_baseline": self.n_baseline,
            "canary_mean": self.canary_mean,
            "baseline_mean": self.baseline_mean,
            "degradation": self.degradation,
            "threshold": self.threshold,
            "p_degraded": self.p_degraded,
            "p_non_inferior": self.p_non_inferior,
            "p_degraded_holm": self.p_degraded_holm,
            "p_non_inferior_holm": self.p_non_inferior_holm,
            "reason": self.reason,
        }


@dataclass(frozen=True)
class Verdict:
    verdict: str
    reasons: tuple[str, ...]
    metrics: tuple[MetricResult, ...]
    counts: dict[str, Any]
    alpha: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "reasons": list(self.reasons),
            "alpha": self.alpha,
            "test": "mSPRT one-sided, half-normal mixture, Holm across metrics",
            "metrics": [m.to_dict() for m in self.metrics],
            "counts": self.counts,
        }


def _summary(kind: MetricKind, observations: Sequence[Observation]) -> ArmSummary:
    values = [v for v in (kind.extract(o) for o in observations) if v is not None]
    if kind.proportion:
        finite = [v for v in values if math.isfinite(v)]
        return ArmSummary.of_proportion(int(sum(finite)), len(finite))
    return ArmSummary.of(values)


_NON_FINITE = (
    "{name}: a statistic overflowed (not a finite number); no decision can be made from it"
)


def _test_metric(
    spec: MetricSpec, canary: ArmSummary, baseline: ArmSummary, min_n: int
) -> MetricResult:
    base = MetricResult(spec, "insufficient", canary.n, baseline.n)
    if canary.n == 0 or baseline.n == 0:
        empty = (
            "both arms"
            if canary.n == baseline.n == 0
            else ("the canary arm" if canary.n == 0 else "the baseline arm")
        )
        return _with(base, reason=f"no {spec.name} observed in {empty}")
    if not all(
        math.isfinite(x) for x in (canary.mean, canary.variance, baseline.mean, baseline.variance)
    ):  # fail closed: no decision, and nothing unrepresentable in the signed verdict
        return _with(base, reason=_NON_FINITE.format(name=spec.name))
    means = {"canary_mean": canary.mean, "baseline_mean": baseline.mean}
    if min(canary.n, baseline.n) < min_n:
        return _with(
            base,
            **means,
            reason=(
                f"{spec.name}: {canary.n} canary and {baseline.n} baseline samples, "
                f"fewer than the minimum {min_n} per arm"
            ),
        )
    scale = abs(baseline.mean)
    if (spec.tolerance_relative or spec.effect_relative) and scale == 0:
        return _with(
            base,
            **means,
            reason=(
                f"{spec.name}: a relative tolerance or effect of a zero baseline is undefined; "
                "give absolute amounts"
            ),
        )
    threshold = spec.tolerance * scale if spec.tolerance_relative else spec.tolerance
    tau = spec.effect * scale if spec.effect_relative else spec.effect
    c = compare(
        canary, baseline, lower_is_better=spec.lower_is_better, threshold=threshold, tau=tau
    )
    if not all(
        math.isfinite(x)
        for x in (threshold, c.degradation, c.variance, c.p_degraded, c.p_non_inferior)
    ):
        return _with(base, reason=_NON_FINITE.format(name=spec.name))
    return _with(
        base,
        **means,
        status="undecided",
        degradation=c.degradation,
        threshold=threshold,
        p_degraded=c.p_degraded,
        p_non_inferior=c.p_non_inferior,
    )


def _with(result: MetricResult, **changes: Any) -> MetricResult:
    from dataclasses import replace

    return replace(result, **changes)


def judge(
    plan: CanaryPlan,
    observations: Iterable[Observation],
    now_ns: int,
    current_release_id: str | None,
    candidate_releases: Sequence[str] = (),
    points: Iterable[MetricPoint] = (),
) -> Verdict:
    """The verdict on `plan` from the requests observed so far (see the module docstring).

    `current_release_id` is the environment's release now; the canary stands while it is the
    baseline release or one of `candidate_releases` (releases of the candidate version made in
    the environment since the canary started: the candidate was promoted while it ran)."""
    arms = select_arms(observations, plan, now_ns, candidate_releases)
    point_arms = select_point_arms(points, plan, now_ns, candidate_releases)
    counts = arms.counts()
    if point_arms.canary or point_arms.baseline or point_arms.dropped:
        counts["metric_points"] = {
            "canary": len(point_arms.canary),
            "baseline": len(point_arms.baseline),
            "dropped": point_arms.dropped,
        }
    results = []
    for spec in plan.metrics:
        canary, baseline = _summary(spec.kind, arms.canary), _summary(spec.kind, arms.baseline)
        source = "spans"
        if canary.n == 0 or baseline.n == 0:
            found = _from_points(spec.kind, point_arms)
            if found is not None:
                canary, baseline, source = found
        tested = _test_metric(spec, canary, baseline, plan.min_samples)
        results.append(_with(tested, source=source))
    rejected_bad = holm([r.p_degraded for r in results], plan.alpha)
    rejected_ok = holm([r.p_non_inferior for r in results], plan.alpha)
    adj_bad = holm_adjusted([r.p_degraded for r in results])
    adj_ok = holm_adjusted([r.p_non_inferior for r in results])
    final = []
    for i, r in enumerate(results):
        status = r.status
        if status == "undecided":
            status = "degraded" if rejected_bad[i] else "non_inferior" if rejected_ok[i] else status
        final.append(
            _with(r, status=status, p_degraded_holm=adj_bad[i], p_non_inferior_holm=adj_ok[i])
        )
    reasons: list[str] = []
    if current_release_id != plan.baseline_release_id and (
        current_release_id is None or current_release_id not in candidate_releases
    ):
        verdict = "inconclusive"
        reasons.append(
            f"models:/{plan.model} in {plan.environment} is on release "
            f"{current_release_id or 'none'}, neither {plan.baseline_release_id} the canary "
            "was started on nor a release of its candidate; start a new canary"
        )
    elif any(r.status == "degraded" for r in final):
        verdict = "rollback"
        reasons += [
            f"{r.spec.name} degraded by {r.degradation:.4g} (tolerated {r.threshold:.4g}), "
            f"Holm-adjusted p = {r.p_degraded_holm:.3g} <= {plan.alpha}"
            for r in final
            if r.status == "degraded"
        ]
    elif any(r.status == "insufficient" for r in final):
        verdict = "inconclusive"
        reasons += [r.reason for r in final if r.status == "insufficient"]
    elif all(r.status == "non_inferior" for r in final):
        verdict = "promote"
        reasons.append(f"every metric is within tolerance at family-wise level {plan.alpha}")
    else:
        verdict = "continue"
        reasons += [f"{r.spec.name}: not yet decided" for r in final if r.status == "undecided"]
    return Verdict(verdict, tuple(reasons), tuple(final), counts, plan.alpha)
