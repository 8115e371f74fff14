"""The FastAPI application: middleware (security headers, request size limits), the error
translator, health and readiness, the OpenAPI document at /api/v1/openapi.json, the routers,
and the web console under /ui/ (`interfaces.web`).

CORS is off: no Access-Control headers are ever sent, so browsers refuse cross-origin reads.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response

from modelward.app import ServerRegistry
from modelward.core.principal import Principal
from modelward.errors import InputError, ModelwardError
from modelward.interfaces.http.auth import authenticate_request
from modelward.interfaces.http.errors import RequestTooLargeError, error_body
from modelward.services.auth_failures import FailureLimiter

API = "/api/v1"
UPLOAD_PREFIX = f"{API}/uploads/"
CONSOLE_PREFIX = "/ui/"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    (b"cache-control", b"no-store"),
    (b"cross-origin-resource-policy", b"same-origin"),
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class HardeningMiddleware:
    """Adds the security headers to every response and refuses request bodies over the limit
    (uploads are limited per file by their endpoint instead)."""

    def __init__(self, app: ASGIApp, max_body: int) -> None:
        self.app = app
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        exceeded = False  # a body without a declared length ran over the limit
        replaced = False

        async def send_with_headers(message: Message) -> None:
            nonlocal replaced
            if exceeded and message["type"] in ("http.response.start", "http.response.body"):
                # whatever the application answers to a body cut short (FastAPI: 400 "error
                # parsing the body"), the client is told what happened: 413, in our error shape
                if not replaced:
                    replaced = True
                    await _reject(send_with_headers_only, self.max_body)
                return
            await send_with_headers_only(message)

        async def send_with_headers_only(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(_security_headers(str(scope.get("path", ""))))
                if scope.get("scheme") == "https":
                    headers.append((b"strict-transport-security", b"max-age=31536000"))
                message["headers"] = headers
            await send(message)

        if str(scope.get("path", "")).startswith(UPLOAD_PREFIX):
            await self.app(scope, receive, send_with_headers)
            return
        declared = dict(scope.get("headers", [])).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.max_body):
            await _reject(send_with_headers, self.max_body)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen, exceeded
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_body:
                    exceeded = True
                    raise RequestTooLargeError(f"the request body is over {self.max_body} bytes")
            return message

        await self.app(scope, limited_receive, send_with_headers)


def _security_headers(path: str) -> list[tuple[bytes, bytes]]:
    """The console's pages load their own scripts and styles (and nothing from elsewhere)."""
    if not path.startswith(CONSOLE_PREFIX):
        return SECURITY_HEADERS
    from modelward.interfaces.web.render import CSP

    # same-origin, not no-referrer: with no-referrer a browser posts forms with `Origin: null`,
    # which the console's CSRF check refuses; same-origin still sends nothing to other sites
    replaced = {
        b"content-security-policy": CSP.encode("ascii"),
        b"referrer-policy": b"same-origin",
    }
    return [(name, replaced.get(name, value)) for name, value in SECURITY_HEADERS]


async def _reject(send: Send, limit: int) -> None:
    response = JSONResponse(*_swap(error_body(RequestTooLargeError(f"over {limit} bytes"))))
    await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - never called by a JSONResponse
    return {"type": "http.disconnect"}


def _swap(pair: tuple[int, dict[str, Any]]) -> tuple[dict[str, Any], int]:
    return pair[1], pair[0]


def create_app(registry: ServerRegistry, run_jobs: bool = False) -> FastAPI:
    from modelward.interfaces.http import (
        routes_audit,
        routes_canary,
        routes_gate,
        routes_jobs,
        routes_models,
        routes_otlp,
        routes_push,
        routes_runtime,
        routes_users,
    )

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        worker = registry.start_job_worker() if run_jobs else None
        try:
            yield
        finally:
            if worker is not None:
                worker.stop()

    app = FastAPI(
        title="modelward",
        version="1",
        openapi_url=f"{API}/openapi.json",
        docs_url=None,
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.registry = registry
    app.state.limiter = FailureLimiter(
        registry.ctx.database, registry.settings.auth_failures_per_minute
    )

    async def modelward_error(request: Request, exc: Exception) -> Response:
        from modelward.errors import RateLimitedError
        from modelward.interfaces.web.app import console_error, is_console

        response = (
            console_error(request, exc)
            if is_console(request)
            else JSONResponse(*_swap(error_body(exc)))
        )
        if isinstance(exc, RateLimitedError):
            response.headers["retry-after"] = "60"  # the failure window's length, at most
        return response

    async def validation_error(request: Request, exc: Exception) -> Response:
        from modelward.interfaces.web.app import console_error, is_console

        detail = exc.errors() if isinstance(exc, RequestValidationError) else []
        reasons = [f"{'.'.join(str(p) for p in d.get('loc', ()))}: {d.get('msg')}" for d in detail]
        if is_console(request):
            return console_error(
                request, InputError("the request is malformed: " + "; ".join(reasons[:5]))
            )
        body = {
            "error": {
                "type": "InputError",
                "message": "the request is malformed",
                "reasons": reasons[:20],
                "exit_code": 2,
            }
        }
        return JSONResponse(body, status_code=400)

    async def http_error(request: Request, exc: Exception) -> Response:
        """Starlette's own answers (no such path, method not allowed) in our error shape, and
        as the console's error page under /ui/."""
        from starlette.exceptions import HTTPException

        from modelward.errors import NotFoundError

        status = exc.status_code if isinstance(exc, HTTPException) else 500
        detail = exc.detail if isinstance(exc, HTTPException) else "error"
        error: ModelwardError
        if status == 404:
            error = NotFoundError(f"no such page or endpoint: {request.url.path[:200]}")
        elif status == 405:
            error = InputError(f"{request.method} is not allowed on {request.url.path[:200]}")
        else:
            error = InputError(f"the request was refused: {str(detail)[:200]}")
        modelward_response = await modelward_error(request, error)
        if status != 404 and not request.url.path.startswith(CONSOLE_PREFIX):
            modelward_response.status_code = status
        return modelward_response

    from starlette.exceptions import HTTPException as StarletteHTTPException

    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(ModelwardError, modelward_error)
    app.add_exception_handler(Exception, modelward_error)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", include_in_schema=False)
    def readyz() -> JSONResponse:
        try:
            from modelward.storage.metadata.registry_repository import RegistryRepository

            with registry.ctx.database.read() as conn:
                RegistryRepository(conn).info()
            registry.ctx.blobs.exists("0" * 64)
        except Exception as exc:
            return JSONResponse(error_body(exc)[1], status_code=503)
        return JSONResponse({"status": "ready"})

    for module in (
        routes_models,
        routes_push,
        routes_gate,
        routes_audit,
        routes_users,
        routes_jobs,
        routes_canary,
        routes_runtime,
    ):
        app.include_router(module.router, prefix=API)
    from modelward.interfaces.web.app import mount_console

    mount_console(app)
    app.include_router(routes_otlp.router)  # OTLP's own standard paths, outside /api/v1
    app.add_middleware(HardeningMiddleware, max_body=registry.settings.max_json_bytes)
    return app


def caller(request: Request) -> Principal:
    """The FastAPI dependency every protected endpoint takes: the authenticated principal."""
    state = request.app.state
    return authenticate_request(state.registry, state.limiter, request)


def registry_of(request: Request) -> ServerRegistry:
    registry: ServerRegistry = request.app.state.registry
    return registry


Caller = Depends(caller)
Registry = Depends(registry_of)
