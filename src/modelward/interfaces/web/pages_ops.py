"""Console pages about operations: environments (current state and release history of every
model, rollback behind a confirmation that shows what will change), the ledger (pages of
events, the newest checkpoint, a proof download for any event) and datasets. The runtime page
is `pages_runtime`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response

from modelward.app import ServerRegistry
from modelward.core.principal import Principal, bind_principal
from modelward.core.roles import Action
from modelward.interfaces.web.render import render
from modelward.interfaces.web.session import Form, SignedIn, check_csrf
from modelward.services.access import authorise, permitted
from modelward.services.web_sessions import WebSession

router = APIRouter()


def _registry(request: Request) -> ServerRegistry:
    registry: ServerRegistry = request.app.state.registry
    return registry


@router.get("/environments", response_class=HTMLResponse)
def environments(request: Request, session: WebSession = SignedIn) -> Response:
    from modelward.services.console import ConsoleService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW, checked_later=True)
    with bind_principal(principal):
        console = ConsoleService(registry.ctx, principal.name)
        names = console.environment_names()
        models = [m for m in console.models() if principal.allows_model(m.name)]
        releases = registry.releases(principal)
        table: dict[str, list[dict[str, Any]]] = {env: [] for env in names}
        for summary in models:
            for env in summary.environments:
                history = releases.list(summary.name, env)
                table[env].append({"model": summary.name, "current": history[-1]})
    return render(request, "environments.html", names=names, table=table)


def _history(
    registry: ServerRegistry, principal: Principal, name: str, environment: str
) -> list[dict[str, Any]]:
    authorise(registry.ctx, principal, Action.VIEW, model=name)
    with bind_principal(principal):
        return registry.releases(principal).list(name, environment)


@router.get("/environments/{environment}/models/{name}", response_class=HTMLResponse)
def releases(
    request: Request,
    environment: str,
    name: str,
    done: str = Query("", max_length=40),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    registry, principal = _registry(request), session.principal
    history = _history(registry, principal, name, environment)
    role, may = permitted(registry.ctx, principal, (Action.ROLLBACK,), name)
    return render(
        request,
        "releases.html",
        environment=environment,
        name=name,
        history=list(reversed(history)),
        current=history[-1] if history else None,
        can_rollback=len(history) > 1 and Action.ROLLBACK in may,
        role=role,
        done=done,
    )


@router.get("/environments/{environment}/models/{name}/rollback", response_class=HTMLResponse)
def confirm_rollback(
    request: Request,
    environment: str,
    name: str,
    to: str = Query("", max_length=100),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    """What the rollback would change, with the button that does it."""
    from modelward.core.release import Release, diff_states, rollback_target

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.ROLLBACK, model=name)
    history = _history(registry, principal, name, environment)
    releases = [Release.from_dict(r) for r in history]
    target = rollback_target(releases, to or None) if releases else None
    if target is None:
        from modelward.errors import NotFoundError

        raise NotFoundError(f"models:/{name} has no release in {environment}")
    current = releases[-1]
    change = diff_states(current.state, target.state)
    return render(
        request,
        "rollback.html",
        environment=environment,
        name=name,
        current=current.to_dict(),
        target=target.to_dict(),
        summary=change.summary(),
    )


@router.post("/environments/{environment}/models/{name}/rollback")
def rollback(
    request: Request,
    environment: str,
    name: str,
    session: WebSession = SignedIn,
    form: dict[str, str] = Form,
) -> Response:
    from modelward.errors import ConflictError, InputError

    check_csrf(request, form, session.csrf_token)
    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.ROLLBACK, model=name)
    shown = form.get("from", "")
    if not shown:
        raise InputError("the rollback form names no current release; reload the page")
    history = _history(registry, principal, name, environment)
    now = history[-1]["release_id"] if history else None
    if now != shown:  # the confirmation showed a change from another release than today's
        raise ConflictError(
            f"{environment} has moved since the confirmation was shown (from {shown} to "
            f"{now}); reload it to see what a rollback would change now"
        )
    with bind_principal(principal):
        registry.releases(principal).rollback(name, environment, form.get("to") or None)
    return RedirectResponse(f"/ui/environments/{environment}/models/{name}?done=rolled-back", 303)


@router.get("/ledger", response_class=HTMLResponse)
def ledger(
    request: Request,
    before: int | None = Query(None, ge=0),
    session: WebSession = SignedIn,
) -> HTMLResponse:
    from modelward.services.console import ConsoleService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        page = ConsoleService(registry.ctx, principal.name).ledger_page(before)
    return render(request, "ledger.html", page=page)


@router.get("/ledger/{seq}/proof")
def proof(request: Request, seq: int, session: WebSession = SignedIn) -> Response:
    """The C2SP tlog-proof of one event under a fresh checkpoint, as a file to keep."""
    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        text = registry.audit().proof(seq)
    return PlainTextResponse(
        text,
        headers={"content-disposition": f'attachment; filename="modelward-proof-{seq}.txt"'},
    )


@router.get("/datasets", response_class=HTMLResponse)
def datasets(request: Request, session: WebSession = SignedIn) -> HTMLResponse:
    from modelward.services.datasets import DatasetService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        rows = DatasetService(registry.ctx, principal.name).list()
    return render(request, "datasets.html", rows=rows)


@router.get("/datasets/{name}/{number}", response_class=HTMLResponse)
def dataset(
    request: Request, name: str, number: int, session: WebSession = SignedIn
) -> HTMLResponse:
    from modelward.services.datasets import DatasetService

    registry, principal = _registry(request), session.principal
    authorise(registry.ctx, principal, Action.VIEW)
    with bind_principal(principal):
        shown = DatasetService(registry.ctx, principal.name).show(f"datasets:/{name}/{number}")
    return render(request, "dataset.html", d=shown)
