"""Shadow comparison: the candidate answers the same requests as the baseline, off the user's
path, and the two answers are compared pair by pair. Pure.

A pair is a baseline request (arm `baseline`, or no arm, served by the baseline version) and a
shadow request (arm `shadow`, served by the candidate version) with the same `trace_id`; each
request counts once (duplicates of (trace_id, span_id) dropped), and a trace with more than one
request on a side is ambiguous and left out. Reported on the pairs:

* length: the mean paired difference of output tokens (candidate − baseline), relative to the
  baseline's mean, with the one-sided mSPRT of `core.sequential` against `length_tolerance`
  (both directions: longer and shorter answers);
* refusal: each side's refusal rate, and the share of pairs where exactly one side refused;
* agreement: the share of pairs with the same refusal decision and the same finish reason.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelward.core.observations import Observation
from modelward.core.sequential import ArmSummary, compare

MIN_PAIRS = 30


@dataclass(frozen=True)
class ShadowReport:
    pairs: int
    unpaired: int
    length_relative_change: float | None
    p_longer: float
    p_shorter: float
    refusal_baseline: float | None
    refusal_candidate: float | None
    refusal_disagreement: float | None
    agreement: float | None
    status: str  # ok, differs, insufficient
    reasons: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "reasons": list(self.reasons)}


def pair_requests(
    observations: Iterable[Observation], model: str, candidate_version: int, baseline_version: int
) -> tuple[list[tuple[Observation, Observation]], int]:
    seen: set[tuple[str, str]] = set()
    sides: dict[str, dict[str, list[Observation]]] = {"b": {}, "s": {}}
    for o in observations:
        if o.model != model or (o.trace_id, o.span_id) in seen:
            continue
        seen.add((o.trace_id, o.span_id))
        if o.arm == "shadow" and o.version == candidate_version:
            sides["s"].setdefault(o.trace_id, []).append(o)
        elif o.arm in (None, "baseline") and o.version == baseline_version:
            sides["b"].setdefault(o.trace_id, []).append(o)
    pairs = []
    for trace, shadows in sides["s"].items():
        base = sides["b"].get(trace, [])
        if len(shadows) == 1 and len(base) == 1:
            pairs.append((base[0], shadows[0]))
    unpaired = sum(len(v) for v in sides["s"].values()) - len(pairs)
    return pairs, unpaired


def _share(flags: list[bool]) -> float | None:
    return sum(flags) / len(flags) if flags else None


def shadow_report(
    observations: Iterable[Observation],
    model: str,
    candidate_version: int,
    baseline_version: int,
    *,
    length_tolerance: float = 0.2,
    max_disagreement: float = 0.05,
    alpha: float = 0.05,
) -> ShadowReport:
    pairs, unpaired = pair_requests(observations, model, candidate_version, baseline_version)
    if len(pairs) < MIN_PAIRS:
        return ShadowReport(
            len(pairs),
            unpaired,
            None,
            1.0,
            1.0,
            None,
            None,
            None,
            None,
            "insufficient",
            (f"{len(pairs)} shadow pairs, fewer than {MIN_PAIRS}",),
        )
    lengths = [
        (b.output_tokens, s.output_tokens)
        for b, s in pairs
        if b.output_tokens is not None and s.output_tokens is not None
    ]
    refusals = [(b.refusal, s.refusal) for b, s in pairs if None not in (b.refusal, s.refusal)]
    same = [
        b.refusal == s.refusal and b.finish_reason == s.finish_reason
        for b, s in pairs
        if b.finish_reason is not None and s.finish_reason is not None
    ]
    reasons = []
    rel, p_longer, p_shorter = None, 1.0, 1.0
    base_mean = sum(b for b, _ in lengths) / len(lengths) if lengths else 0.0
    if len(lengths) >= MIN_PAIRS and base_mean > 0:
        diffs = ArmSummary.of([(s - b) / base_mean for b, s in lengths])
        zero = ArmSummary(diffs.n, 0.0, 0.0)
        tol = length_tolerance
        longer = compare(diffs, zero, lower_is_better=True, threshold=tol, tau=tol)
        shorter = compare(diffs, zero, lower_is_better=False, threshold=tol, tau=tol)
        rel, p_longer, p_shorter = diffs.mean, longer.p_degraded, shorter.p_degraded
        if min(p_longer, p_shorter) <= alpha / 2:
            reasons.append(
                f"answers are {rel:+.1%} longer on average, beyond ±{tol:.0%} (p ≤ {alpha / 2})"
            )
    disagreement = _share([b != s for b, s in refusals])
    if disagreement is not None and disagreement > max_disagreement:
        reasons.append(
            f"the two disagree on refusing {disagreement:.1%} of requests "
            f"(more than {max_disagreement:.0%})"
        )
    return ShadowReport(
        pairs=len(pairs),
        unpaired=unpaired,
        length_relative_change=rel,
        p_longer=p_longer,
        p_shorter=p_shorter,
        refusal_baseline=_share([bool(b) for b, _ in refusals]),
        refusal_candidate=_share([bool(s) for _, s in refusals]),
        refusal_disagreement=disagreement,
        agreement=_share(same),
        status="differs" if reasons else "ok",
        reasons=tuple(reasons),
    )
