"""The console's runtime page: for each environment, each model the signed-in person may see
that is released there: its canary (candidate against baseline, every recorded verdict with its
per-metric statistics, and a chart of the Holm-adjusted p-values over the judgements), its
requests per release as charts over the chosen time range (latency, time to first token,
refusal and error rates, output tokens) with the totals in a table, its drift against the
release before with the alert thresholds (its own request, `/ui/runtime/drift`, loaded into
the page by htmx: it reads every request of two releases), and the registry's recent alert
deliveries.

Authorises like the other pages (a model-limited token sees only its models, and no alert
deliveries: they name no model), reads through `RuntimeConsoleService`, and turns its typed
result into the chart component's JSON. Renders only.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from modelward.app import ServerRegistry
from modelward.core.principal import bind_principal
from modelward.core.roles import Action
from modelward.interfaces.web.render import render
from modelward.interfaces.web.session import SignedIn
from modelward.services.access import authorise
from modelward.services.canary_history import CanaryHistory
from modelward.services.console_runtime import (
    DEFAULT_RANGE,
    RANGES,
    SIGNALS,
    ModelRuntime,
    RuntimeView,
)
from modelward.services.web_sessions import WebSession

router = APIRouter()


def _registry(request: Request) -> ServerRegistry:
    registry: ServerRegistry = request.app.state.registry
    return registry


def _signal_charts(m: ModelRuntime) -> list[dict[str, Any]]:
    return [
        {
            "signal": signal,
            "title": title,
            "data": {
                "x": list(m.series.x),
                "series": {k: list(v) for k, v in m.series.observed(signal).items()},
                "x_label": "time (UTC)",
                "time_x": True,
            },
        }
        for signal, (title, _) in SIGNALS.items()
    ]


def _verdict_chart(canary: CanaryHistory) -> dict[str, Any]:
    """Each metric's Holm-adjusted p-value of degradation by judgement, against alpha."""
    series: dict[str, list[float | None]] = {}
    for index, verdict in enumerate(canary.verdicts):
        for metric in verdict.metrics:
            column = series.setdefault(
                f"p degraded (Holm), {metric.metric}", [None] * len(canary.verdicts)
            )
            column[index] = metric.p_degraded_holm
    if series:
        series["alpha"] = [v.alpha for v in canary.verdicts]
    return {
        "x": list(range(1, len(canary.verdicts) + 1)),
        "series": series,
        "x_label": "judgement",
        "integer_x": True,
    }


def _charts(view: RuntimeView) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for env, models in view.environments:
        for m in models:
            out[f"{env}/{m.model}"] = {
                "signals": _signal_charts(m),
                "verdicts": _verdict_chart(m.canary) if m.canary else None,
            }
    return out


@router.get("/runtime", response_class=HTMLResponse)
def runtime(
    request: Request,
    time_range: str = Query(DEFAULT_RANGE, alias="range", max_length=8),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    from modelward.services.console import ConsoleService
    from modelward.services.console_runtime import RuntimeConsoleService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        console = ConsoleService(registry.ctx, principal.name)
        names = console.environment_names()
        models = [m for m in console.models() if principal.allows_model(m.name)]
        released = {env: [m.name for m in models if env in m.environments] for env in names}
        view = RuntimeConsoleService(registry.ctx, principal.name).view(
            released,
            registry.now(),
            time_range,
            with_alerts=principal.model_pattern is None,
            with_drift=False,  # loaded by its own request (`drift` below)
        )
    return render(
        request,
        "runtime.html",
        view=view,
        charts=_charts(view),
        ranges=list(RANGES),
        model_pattern=principal.model_pattern,
        any_model=any(models for _, models in view.environments),
    )


@router.get("/runtime/drift", response_class=HTMLResponse)
def drift(
    request: Request,
    model: str = Query(..., max_length=200),
    environment: str = Query(..., max_length=100),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    """The drift panel of one model in one environment (the runtime page loads it with htmx,
    or links to it): it reads every request of two releases, so it is its own request."""
    from modelward.errors import NotFoundError
    from modelward.services.console_runtime import RuntimeConsoleService
    from modelward.services.gate_config import load_gate_config

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, model=model)
    if environment not in load_gate_config(registry.ctx).path.environments:
        raise NotFoundError(f"no environment {environment!r}")
    with bind_principal(principal):
        found, problem = RuntimeConsoleService(registry.ctx, principal.name).drift(
            model, environment
        )
    return render(
        request,
        "runtime_drift.html",
        drift=found,
        problem=problem,
        model=model,
        environment=environment,
    )
