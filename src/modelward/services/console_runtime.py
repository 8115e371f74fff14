"""The console's runtime view: for each environment and each model released there, its canary
(candidate against baseline, every recorded verdict with the statistics its signed statement
carries), its requests as time series per release (latency, time to first token, refusal and
error rates, output tokens; added up per window by the database), its drift against the
release before, and the registry's recent alert deliveries.

Reads only through the services that own these records, as the acting user:
`CanaryService.history` (rows verified against the ledger, verdicts whose registry signatures
check), `TelemetryService.series`, `DriftService.report` (verified releases only) and
`AlertService.deliveries` / `webhooks` (never a secret). A record that fails its check is shown
as that problem, never as data (fail closed). Which models the caller may see is decided by the
page (as every console page does); the services check the bound principal again. Alert
deliveries name no model, so a caller limited to a model pattern gets none. Stores nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from modelward.errors import ModelwardError
from modelward.runtime.drift import DriftMetric
from modelward.services.canary_history import CanaryHistory
from modelward.services.context import RegistryContext, current_actor
from modelward.storage.metadata.telemetry_repository import WindowTotals

# the ranges a page may ask for: (seconds shown, seconds per window)
RANGES: Mapping[str, tuple[int, int]] = {
    "1h": (3600, 60),
    "6h": (6 * 3600, 300),
    "24h": (24 * 3600, 1800),
    "7d": (7 * 24 * 3600, 3 * 3600),
}
DEFAULT_RANGE = "24h"
ALERT_ROWS = 200  # delivery attempts read; grouped into deliveries
ALERTS_SHOWN = 25


def _mean(total: float, n: int, scale: float = 1.0) -> float | None:
    return total / n * scale if n else None


def _rate(part: int, n: int) -> float | None:
    return part / n if n else None


# signal name -> (title, value of one release's window totals; None when nothing observed)
SIGNALS: Mapping[str, tuple[str, Callable[[WindowTotals], float | None]]] = {
    "latency": ("latency, mean (ms)", lambda t: _mean(t.latency_sum_s, t.latency_n, 1000.0)),
    "ttft": ("time to first token, mean (ms)", lambda t: _mean(t.ttft_sum_s, t.ttft_n, 1000.0)),
    "refusal_rate": ("refusal rate", lambda t: _rate(t.refusals, t.refusal_n)),
    "error_rate": ("error rate", lambda t: _rate(t.errors, t.requests)),
    "output_tokens": (
        "output length, mean (tokens)",
        lambda t: _mean(t.output_tokens_sum, t.output_tokens_n),
    ),
}


def release_label(version: int, release_id: str | None) -> str:
    return f"v{version} · {release_id}" if release_id else f"v{version} · no release"


@dataclass(frozen=True)
class ReleaseTotals:
    """One release's requests over the whole range shown."""

    label: str
    version: int
    release_id: str | None
    requests: int
    error_rate: float | None
    latency_ms: float | None
    ttft_ms: float | None
    refusal_rate: float | None
    output_tokens: float | None


@dataclass(frozen=True)
class SignalSeries:
    """Window starts (Unix seconds) and, per signal, one aligned column per release (None
    where that release served nothing, or nothing that carried the signal)."""

    x: tuple[int, ...]
    signals: Mapping[str, Mapping[str, tuple[float | None, ...]]]

    def observed(self, signal: str) -> dict[str, tuple[float | None, ...]]:
        """The columns of `signal` with at least one value."""
        columns = self.signals.get(signal, {})
        return {k: v for k, v in columns.items() if any(x is not None for x in v)}


@dataclass(frozen=True)
class DriftView:
    release_id: str
    baseline_release_id: str | None
    thresholds: Mapping[str, float]
    metrics: tuple[DriftMetric, ...]
    drift: bool


@dataclass(frozen=True)
class ModelRuntime:
    model: str
    environment: str
    canary: CanaryHistory | None
    canary_problem: str | None
    series: SignalSeries
    releases: tuple[ReleaseTotals, ...]
    drift: DriftView | None
    drift_problem: str | None

    @property
    def requests(self) -> int:
        return sum(r.requests for r in self.releases)


@dataclass(frozen=True)
class AlertDelivery:
    """One alert sent to one webhook, with its attempts (newest first on the page)."""

    delivery_id: str
    event: str
    webhook_id: int
    webhook_name: str | None  # None: the webhook's row is gone or not current
    first_at: str
    last_at: str
    attempts: int
    outcome: str  # of the last attempt: delivered, failed (will retry), gave_up
    http_status: int | None
    error: str | None


@dataclass(frozen=True)
class RuntimeView:
    range: str
    window_s: int
    since: datetime
    until: datetime
    environments: tuple[tuple[str, tuple[ModelRuntime, ...]], ...]
    alerts: tuple[AlertDelivery, ...] | None  # None: not shown to this caller
    alerts_problem: str | None


class RuntimeConsoleService:
    def __init__(self, context: RegistryContext, actor: str | None = None) -> None:
        self.ctx = context
        self.actor = actor or current_actor()

    def view(
        self,
        released: Mapping[str, Sequence[str]],
        now: datetime,
        range_name: str = DEFAULT_RANGE,
        *,
        with_alerts: bool = True,
        with_drift: bool = True,
    ) -> RuntimeView:
        """`released`: environment -> the models released there that the caller may see, in
        the order to show them. `with_alerts=False` leaves the registry-wide deliveries out;
        `with_drift=False` leaves drift out (it reads every request of two releases: a page
        asks `drift` for it separately)."""
        from modelward.errors import InputError

        if range_name not in RANGES:
            raise InputError(f"unknown range {range_name!r}; one of {', '.join(RANGES)}")
        span_s, window_s = RANGES[range_name]
        width = window_s * 1_000_000_000
        now_ns = int(now.timestamp() * 1e9)
        until_ns = (now_ns // width + 1) * width  # the window holding now is the last one
        since_ns = until_ns - span_s * 1_000_000_000
        environments = tuple(
            (
                env,
                tuple(
                    self._model(m, env, since_ns, until_ns, window_s, with_drift) for m in models
                ),
            )
            for env, models in released.items()
        )
        alerts, problem = self._alerts() if with_alerts else (None, None)
        return RuntimeView(
            range=range_name,
            window_s=window_s,
            since=datetime.fromtimestamp(since_ns / 1e9, tz=now.tzinfo),
            until=datetime.fromtimestamp(until_ns / 1e9, tz=now.tzinfo),
            environments=environments,
            alerts=alerts,
            alerts_problem=problem,
        )

    def _model(
        self,
        model: str,
        environment: str,
        since_ns: int,
        until_ns: int,
        window_s: int,
        with_drift: bool,
    ) -> ModelRuntime:
        from modelward.services.canary import CanaryService
        from modelward.services.telemetry import TelemetryService

        canary: CanaryHistory | None = None
        canary_problem: str | None = None
        try:
            canary = CanaryService(self.ctx, self.actor).history(model, environment)
        except ModelwardError as exc:
            canary_problem = str(exc)
        totals = TelemetryService(self.ctx, self.actor).series(
            model, environment, since_ns=since_ns, until_ns=until_ns, window_s=window_s
        )
        drift, drift_problem = self.drift(model, environment) if with_drift else (None, None)
        return ModelRuntime(
            model=model,
            environment=environment,
            canary=canary,
            canary_problem=canary_problem,
            series=_series(totals, since_ns, until_ns, window_s),
            releases=_release_totals(totals),
            drift=drift,
            drift_problem=drift_problem,
        )

    def drift(self, model: str, environment: str) -> tuple[DriftView | None, str | None]:
        """The drift of the environment's current release against the release before it
        (`DriftService.report`), or why there is none."""
        from modelward.services.canary import telemetry_source
        from modelward.services.drift import DriftService

        try:
            report = DriftService(self.ctx, self.actor, telemetry_source(self.ctx)).report(
                model, environment
            )
        except ModelwardError as exc:
            return None, str(exc)
        metrics = tuple(
            DriftMetric(
                name=str(m["name"]),
                n_baseline=int(m["n_baseline"]),
                n_current=int(m["n_current"]),
                psi=m["psi"],
                js=m["js"],
                wasserstein_relative=m["wasserstein_relative"],
                status=str(m["status"]),
                exceeded=tuple(m["exceeded"]),
            )
            for m in report["metrics"]
        )
        return (
            DriftView(
                release_id=str(report["release_id"]),
                baseline_release_id=report["baseline_release_id"],
                thresholds=dict(report["thresholds"]),
                metrics=metrics,
                drift=bool(report["drift"]),
            ),
            None,
        )

    def _alerts(self) -> tuple[tuple[AlertDelivery, ...], str | None]:
        from modelward.services.alerts import AlertService

        service = AlertService(self.ctx, self.actor)
        try:
            rows = service.deliveries(ALERT_ROWS)
            hooks = service.webhooks()
        except ModelwardError as exc:
            return (), str(exc)
        names = {int(h["id"]): str(h["name"]) for h in hooks if "id" in h}
        return _deliveries(rows, names)[:ALERTS_SHOWN], None


def _series(
    totals: Sequence[WindowTotals], since_ns: int, until_ns: int, window_s: int
) -> SignalSeries:
    width = window_s * 1_000_000_000
    starts = list(range(since_ns, until_ns, width))
    index = {start: i for i, start in enumerate(starts)}
    labels = sorted(
        {(t.version, t.release_id or "") for t in totals},
        key=lambda k: (k[0], k[1]),
    )
    signals: dict[str, dict[str, tuple[float | None, ...]]] = {}
    for signal, (_, value) in SIGNALS.items():
        columns: dict[str, list[float | None]] = {
            release_label(v, r or None): [None] * len(starts) for v, r in labels
        }
        for t in totals:
            if t.window_start_ns in index:
                columns[release_label(t.version, t.release_id)][index[t.window_start_ns]] = value(t)
        signals[signal] = {k: tuple(v) for k, v in columns.items()}
    return SignalSeries(tuple(s // 1_000_000_000 for s in starts), signals)


_SUMMED = (
    "requests",
    "errors",
    "latency_sum_s",
    "latency_n",
    "ttft_sum_s",
    "ttft_n",
    "output_tokens_sum",
    "output_tokens_n",
    "refusals",
    "refusal_n",
)


def _release_totals(totals: Sequence[WindowTotals]) -> tuple[ReleaseTotals, ...]:
    merged: dict[tuple[int, str], WindowTotals] = {}
    for t in totals:
        key = (t.version, t.release_id or "")
        seen = merged.get(key)
        merged[key] = (
            t
            if seen is None
            else replace(seen, **{f: getattr(seen, f) + getattr(t, f) for f in _SUMMED})
        )
    return tuple(
        ReleaseTotals(
            label=release_label(t.version, t.release_id),
            version=t.version,
            release_id=t.release_id,
            requests=t.requests,
            error_rate=_rate(t.errors, t.requests),
            latency_ms=_mean(t.latency_sum_s, t.latency_n, 1000.0),
            ttft_ms=_mean(t.ttft_sum_s, t.ttft_n, 1000.0),
            refusal_rate=_rate(t.refusals, t.refusal_n),
            output_tokens=_mean(t.output_tokens_sum, t.output_tokens_n),
        )
        for _, t in sorted(merged.items(), key=lambda kv: kv[0])
    )


def _deliveries(
    rows: Sequence[Mapping[str, Any]], names: Mapping[int, str]
) -> tuple[AlertDelivery, ...]:
    """Attempts (newest first) grouped into one delivery per (delivery id, webhook)."""
    groups: dict[tuple[str, int], list[Mapping[str, Any]]] = {}
    for row in rows:
        groups.setdefault((str(row["delivery_id"]), int(row["webhook_id"])), []).append(row)
    out = []
    for (delivery_id, webhook_id), attempts in groups.items():
        last = max(attempts, key=lambda r: int(r["attempt"]))
        first = min(attempts, key=lambda r: int(r["attempt"]))
        out.append(
            AlertDelivery(
                delivery_id=delivery_id,
                event=str(last["event"]),
                webhook_id=webhook_id,
                webhook_name=names.get(webhook_id),
                first_at=str(first["at"]),
                last_at=str(last["at"]),
                attempts=int(last["attempt"]),
                outcome=str(last["outcome"]),
                http_status=None if last["http_status"] is None else int(last["http_status"]),
                error=None if last["error"] is None else str(last["error"]),
            )
        )
    return tuple(out)
