"""Console pages about models: the searchable list, one model, one version (files, signatures,
scan findings, provenance, evaluations, approvals, decisions, lineage, ML-BOM), the diff of two
versions, and the approve and promote forms.

Each page authorises like the API's endpoint (`access.authorise`), calls the services with the
principal bound, and renders; each POST checks the CSRF token and the Origin first.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.errors import DependencyError, InputError, ModelwardError
from modelward.interfaces.web.render import render
from modelward.interfaces.web.session import Form, SignedIn, check_csrf
from modelward.services.access import authorise, permitted
from modelward.services.web_sessions import WebSession

router = APIRouter()
SIGNATURE_KINDS = ("registry-signature", "uploader-signature")


def _registry(request: Request) -> ServerRegistry:
    registry: ServerRegistry = request.app.state.registry
    return registry


def _uri(name: str, number: int) -> str:
    if number < 1:
        raise InputError(f"{number} is not a version number (1, 2, …)")
    return f"models:/{name}/{number}"


@router.get("/models", response_class=HTMLResponse)
def models(
    request: Request,
    q: str = Query("", max_length=200),
    owner: str = Query("", max_length=200),
    risk_tier: str = Query("", max_length=20),
    environment: str = Query("", max_length=100),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    from modelward.services.console import ConsoleService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        console = ConsoleService(registry.ctx, principal.name)
        rows = [
            m
            for m in console.models(q, owner, risk_tier, environment)
            if principal.allows_model(m.name)
        ]
        owners = console.owners()
        environments = console.environment_names()
    return render(
        request,
        "models.html",
        rows=rows,
        filters={"q": q, "owner": owner, "risk_tier": risk_tier, "environment": environment},
        owners=owners,
        environments=environments,
        risk_tiers=("low", "medium", "high"),
    )


@router.get("/models/{name}", response_class=HTMLResponse)
def model(request: Request, name: str, session: WebSession = SignedIn) -> Response:
    from modelward.services.console import ConsoleService
    from modelward.services.evidence import EvidenceService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        versions = registry.registry(principal).list_versions(name)
        evidence = EvidenceService(registry.ctx, principal.name)
        series: dict[str, list[float | None]] = {}
        numbers = [int(v["version"]) for v in versions]
        for index, number in enumerate(numbers):
            _, evaluations = evidence.evaluations(_uri(name, number))
            for evaluation in evaluations:
                if not evaluation.get("verified"):
                    continue
                for metric, value in evaluation.get("metrics", {}).items():
                    label = f"{evaluation['suite']}.{metric}"
                    series.setdefault(label, [None] * len(numbers))[index] = float(value)
        environments = ConsoleService(registry.ctx, principal.name).environment_names()
    chart = {
        "x": numbers,
        "series": dict(sorted(series.items())),
        "x_label": "version",
        "integer_x": True,
    }
    return render(
        request,
        "model.html",
        name=name,
        versions=versions,
        metrics_chart=chart,
        environments=environments,
    )


def _scan(attestations: list[dict[str, Any]]) -> dict[str, Any] | None:
    for att in attestations:
        if att["kind"] == "scan" and att.get("verified"):
            predicate: dict[str, Any] = att["statement"]["predicate"]
            return predicate
    return None


def _change(attestations: list[dict[str, Any]]) -> dict[str, Any] | None:
    for att in attestations:
        if att["kind"] == "change" and att.get("verified"):
            predicate: dict[str, Any] = att["statement"]["predicate"]
            return predicate
    return None


def _datasets(registry: ServerRegistry, principal: Principal, uris: list[str]) -> list[Any]:
    from modelward.services.datasets import DatasetService

    out = []
    service = DatasetService(registry.ctx, principal.name)
    for uri in uris:
        try:
            out.append(service.show(uri))
        except ModelwardError as exc:
            out.append({"uri": uri, "problem": str(exc)})
    return out


def version_context(
    registry: ServerRegistry, principal: Principal, name: str, number: int
) -> dict[str, Any]:
    """Everything the version page shows (also what the benchmark times)."""
    from modelward.services.console import ConsoleService
    from modelward.services.provenance import ProvenanceService

    uri = _uri(name, number)
    role, may = permitted(
        registry.ctx, principal, (Action.VIEW, Action.APPROVE, Action.PROMOTE), name
    )
    if Action.VIEW not in may:
        authorise(registry.ctx, principal, Action.VIEW, model=name)  # raises, naming why
    with bind_principal(principal):
        shown = registry.registry(principal).show(uri)
        gate = registry.gate(principal)
        decisions = gate.decisions(uri)
        console = ConsoleService(registry.ctx, principal.name)
        approvals = console.approvals(uri)
        environments = list(gate.config.path.environments)
        provenance_service = ProvenanceService(registry.ctx, principal.name)
        upstream = provenance_service.lineage(uri)
        downstream = provenance_service.lineage(uri, downstream=True)
        datasets = _datasets(registry, principal, list(shown["provenance"].get("datasets", [])))
    can_approve = Action.APPROVE in may and principal.name != shown["created_by"]
    return {
        "v": shown,
        "uri": uri,
        "signatures": [a for a in shown["attestations"] if a["kind"] in SIGNATURE_KINDS],
        "scan": _scan(shown["attestations"]),
        "change": _change(shown["attestations"]),
        "datasets": datasets,
        "decisions": list(reversed(decisions)),
        "approvals": approvals,
        "upstream": upstream,
        "downstream": downstream,
        "environments": environments,
        "can_approve": can_approve,
        "can_promote": Action.PROMOTE in may,
        "role": role,
        "previous": number - 1 if number > 1 else None,
    }


@router.get("/models/{name}/versions/{number}", response_class=HTMLResponse)
def version(
    request: Request,
    name: str,
    number: int,
    done: str = Query("", max_length=40),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    context = version_context(_registry(request), session.principal, name, number)
    return render(request, "version.html", done=done, **context)


@router.get("/models/{name}/versions/{number}/bom.json")
def bom(request: Request, name: str, number: int, session: WebSession = SignedIn) -> Response:
    from modelward.services.evidence import EvidenceService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        try:
            text = EvidenceService(registry.ctx, principal.name).bom(_uri(name, number))
        except DependencyError as exc:
            return render(
                request,
                "error.html",
                status_code=500,
                status=500,
                error={"type": "DependencyError", "message": str(exc), "reasons": []},
            )
    return Response(
        text,
        media_type="application/vnd.cyclonedx+json",
        headers={"content-disposition": f'attachment; filename="{name}-{number}.cdx.json"'},
    )


@router.post("/models/{name}/versions/{number}/approve")
def approve(
    request: Request,
    name: str,
    number: int,
    session: WebSession = SignedIn,
    form: dict[str, str] = Form,
) -> Response:
    check_csrf(request, form, session.csrf_token)
    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.APPROVE, model=name)
    with bind_principal(principal):
        registry.gate(principal).approve(
            _uri(name, number),
            form.get("environment", ""),
            comment=form.get("comment", ""),
            sign_off=form.get("sign_off") == "on",
        )
    return RedirectResponse(f"/ui/models/{name}/versions/{number}?done=approved", 303)


@router.post("/models/{name}/versions/{number}/promote", response_class=HTMLResponse)
def promote(
    request: Request,
    name: str,
    number: int,
    session: WebSession = SignedIn,
    form: dict[str, str] = Form,
) -> HTMLResponse:
    from modelward.services.gate import parse_flag

    check_csrf(request, form, session.csrf_token)
    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.PROMOTE, model=name)
    flags = dict(
        parse_flag(line.strip()) for line in form.get("flags", "").splitlines() if line.strip()
    )
    environment = form.get("environment", "")
    with bind_principal(principal):
        result = registry.gate(principal).promote(
            _uri(name, number),
            environment,
            flags=flags or None,
            risk_tier=form.get("risk_tier") or None,
        )
    return render(
        request,
        "promoted.html",
        result=result.to_dict(),
        name=name,
        number=number,
        environment=environment,
    )


@router.get("/diff", response_class=HTMLResponse)
def diff(
    request: Request,
    a: str = Query(..., max_length=400),
    b: str = Query(..., max_length=400),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    from modelward.errors import NotFoundError
    from modelward.services.console import ConsoleService
    from modelward.services.evidence import EvidenceService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        service = registry.registry(principal)
        record_a, record_b = service.resolve(a), service.resolve(b)
        principal.check_model(record_a.model)
        principal.check_model(record_b.model)
        files = ConsoleService(registry.ctx, principal.name).file_diff(a, b)
        change_b = _change(service.show(record_b.uri)["attestations"])
        try:
            deltas = EvidenceService(registry.ctx, principal.name).compare(a, b).deltas
        except NotFoundError:
            deltas = []
    return render(
        request,
        "diff.html",
        a=record_a,
        b=record_b,
        files=files,
        change=change_b,
        deltas=deltas,
    )
