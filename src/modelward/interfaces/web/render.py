"""Rendering console pages: the Jinja2 environment (autoescape on for every template), the
context every page gets (the principal, its role, what it may press), and the HTML error page.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import Request
from fastapi.responses import HTMLResponse

from modelward.errors import PermissionDeniedError

if TYPE_CHECKING:
    import jinja2

    from modelward.app import ServerRegistry

HERE = Path(__file__).resolve().parent
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


@functools.lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["short"] = lambda text, n=12: str(text)[:n] if text else ""
    env.filters["pretty"] = lambda value: json.dumps(value, indent=2, sort_keys=True)
    return env


def render(
    request: Request,
    template: str,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    session = getattr(request.state, "web_session", None)
    registry: ServerRegistry = request.app.state.registry
    role = context.pop("role", None)
    if session is not None and role is None:
        from modelward.services.users import role_of

        try:
            with registry.ctx.database.read() as conn:
                role = role_of(conn, session.principal.name)
        except PermissionDeniedError:
            role = None
    page = environment().get_template(template)
    html = page.render(
        request=request,
        session=session,
        principal=session.principal if session else None,
        role=role,
        csrf_token=session.csrf_token if session else "",
        **context,
    )
    return HTMLResponse(html, status_code=status_code)


def error_page(request: Request, error: BaseException) -> HTMLResponse:
    from modelward.interfaces.http.errors import error_body

    status, body = error_body(error)
    return render(request, "error.html", status_code=status, error=body["error"], status=status)
