"""Mounting the console on the server's FastAPI app: its routers under `/ui`, its static files
(its own and the vendored ones) under `/ui/static`, `/` and `/ui/` sent to the models page, and
its errors rendered as HTML (a missing session sends the browser to sign in). None of its
routes is in the API's OpenAPI document.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from modelward.interfaces.web.render import HERE

PREFIX = "/ui"


def mount_console(app: FastAPI) -> None:
    from modelward.interfaces.web import pages_models, pages_ops, pages_runtime, signin

    for module in (signin, pages_models, pages_ops, pages_runtime):
        app.include_router(module.router, prefix=PREFIX, include_in_schema=False)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=HERE / "static"), name="console-static")

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/", status_code=307)

    @app.get(f"{PREFIX}/", include_in_schema=False)
    def home() -> RedirectResponse:
        return RedirectResponse(f"{PREFIX}/models", status_code=307)


def is_console(request: Request) -> bool:
    return request.url.path == PREFIX or request.url.path.startswith(f"{PREFIX}/")


def console_error(request: Request, exc: Exception) -> Response:
    from modelward.interfaces.web.render import error_page
    from modelward.interfaces.web.session import SignInRequiredError

    if isinstance(exc, SignInRequiredError):
        return RedirectResponse(f"{PREFIX}/login", status_code=303)
    return error_page(request, exc)
