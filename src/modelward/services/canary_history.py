"""A canary's record as it was judged: its definition and every recorded verdict with the
statistics the verdict's signed statement carries (per metric: the arms' sizes and means, the
degradation against its tolerance, the mSPRT p-values raw and Holm-adjusted).

Built only by `CanaryService.history`, from rows it verified against the ledger and from
envelopes whose registry signature and statement digest it checked: what is shown is what was
signed, never the row's own columns alone. Pure: parses statements, reads nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from modelward.errors import VerificationError
from modelward.runtime.canary import CanaryPlan


@dataclass(frozen=True)
class RecordedMetric:
    metric: str
    spec: str
    status: str  # degraded, non_inferior, undecided, insufficient
    n_canary: int
    n_baseline: int
    canary_mean: float | None
    baseline_mean: float | None
    degradation: float | None
    threshold: float | None
    p_degraded: float
    p_non_inferior: float
    p_degraded_holm: float
    p_non_inferior_holm: float
    reason: str


@dataclass(frozen=True)
class RecordedVerdict:
    verdict: str
    judged_at: str
    judged_by: str
    acted: str | None
    statement_digest: str
    alpha: float
    reasons: tuple[str, ...]
    metrics: tuple[RecordedMetric, ...]
    n_canary: int
    n_baseline: int


@dataclass(frozen=True)
class CanaryHistory:
    canary_id: int
    model: str
    environment: str
    candidate_version: int
    baseline_version: int
    baseline_release_id: str
    started_at: str
    started_by: str
    plan: CanaryPlan
    verdicts: tuple[RecordedVerdict, ...]

    @property
    def ended(self) -> bool:
        """A canary that acted on a verdict has ended (it never acts again)."""
        return any(v.acted for v in self.verdicts)

    @property
    def state(self) -> str:
        if self.ended:
            return "ended"
        return "running, not judged yet" if not self.verdicts else "running"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{value!r} is not a number")
    return float(value)


def _metric(data: Mapping[str, Any]) -> RecordedMetric:
    return RecordedMetric(
        metric=str(data["metric"]),
        spec=str(data["spec"]),
        status=str(data["status"]),
        n_canary=int(data["n_canary"]),
        n_baseline=int(data["n_baseline"]),
        canary_mean=_number(data.get("canary_mean")),
        baseline_mean=_number(data.get("baseline_mean")),
        degradation=_number(data.get("degradation")),
        threshold=_number(data.get("threshold")),
        p_degraded=float(data["p_degraded"]),
        p_non_inferior=float(data["p_non_inferior"]),
        p_degraded_holm=float(data["p_degraded_holm"]),
        p_non_inferior_holm=float(data["p_non_inferior_holm"]),
        reason=str(data.get("reason", "")),
    )


def recorded_verdict(
    verdict_id: int, canary_id: int, statement_digest: str, predicate: Mapping[str, Any]
) -> RecordedVerdict:
    """The verdict a verified statement's predicate records (VerificationError if it is not
    the shape `CanaryService.judge` signs, or belongs to another canary)."""
    try:
        if int(predicate["canary_id"]) != canary_id:
            raise VerificationError(
                f"canary verdict {verdict_id}: its statement is about canary "
                f"{predicate['canary_id']}, not {canary_id}"
            )
        counts = predicate.get("counts") or {}
        metrics: Sequence[Mapping[str, Any]] = predicate["metrics"]
        return RecordedVerdict(
            verdict=str(predicate["verdict"]),
            judged_at=str(predicate["judged_at"]),
            judged_by=str(predicate["judged_by"]),
            acted=None if predicate.get("acted") is None else str(predicate["acted"]),
            statement_digest=statement_digest,
            alpha=float(predicate["alpha"]),
            reasons=tuple(str(r) for r in predicate.get("reasons", ())),
            metrics=tuple(_metric(m) for m in metrics),
            n_canary=int(counts.get("canary", 0)),
            n_baseline=int(counts.get("baseline", 0)),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise VerificationError(
            f"canary verdict {verdict_id}: its signed statement is not a canary verdict ({exc})"
        ) from exc
