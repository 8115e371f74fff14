"""The console's cookies and request checks: the session cookie (`__Host-` prefix, HttpOnly,
Secure, SameSite=Lax, path /), the signed-in session of a request, and the CSRF checks every
POST passes (the form's token equals the session's, compared in constant time, and the
request's Origin is this server's).
"""

from __future__ import annotations

import hmac
import secrets
import urllib.parse

from fastapi import Depends, Request
from fastapi.responses import Response

from modelward.app import ServerRegistry
from modelward.errors import InputError, PermissionDeniedError
from modelward.services.web_sessions import WebSession, WebSessionService

SESSION_COOKIE = "__Host-modelward_session"
LOGIN_COOKIE = "__Host-modelward_login"  # the OIDC `state` of a sign-in in progress
PRE_CSRF_COOKIE = "__Host-modelward_csrf"  # the sign-in form's CSRF token (no session yet)
MAX_FORM_BYTES = 64 * 1024


class SignInRequiredError(PermissionDeniedError):
    """No live session: the browser is sent to the sign-in page."""


class CsrfError(PermissionDeniedError):
    """A POST without the session's CSRF token or from another origin."""


def set_cookie(response: Response, name: str, value: str, max_age: int | None) -> None:
    response.set_cookie(
        name, value, max_age=max_age, path="/", secure=True, httponly=True, samesite="lax"
    )


def clear_cookie(response: Response, name: str) -> None:
    response.delete_cookie(name, path="/", secure=True, httponly=True, samesite="lax")


def session_of(request: Request) -> WebSession | None:
    secret = request.cookies.get(SESSION_COOKIE)
    if not secret:
        return None
    registry: ServerRegistry = request.app.state.registry
    return WebSessionService(registry.ctx).find(secret, registry.now())


def require_session(request: Request) -> WebSession:
    """The FastAPI dependency of every signed-in page."""
    session = session_of(request)
    if session is None:
        raise SignInRequiredError("sign in to use the console")
    request.state.web_session = session
    return session


def own_origin(request: Request) -> str:
    """The origin browsers use for this server: MODELWARD_PUBLIC_URL when a reverse proxy
    terminates TLS in front of it, else the request's own scheme and host."""
    public = getattr(request.app.state.registry.settings, "public_url", None)
    if isinstance(public, str):
        return public
    return f"{request.url.scheme}://{request.url.netloc}"


def check_origin(request: Request) -> None:
    """The Origin (or, lacking it, the Referer) must be this server: a form posted from
    another site is refused even if it carried the cookie."""
    own = own_origin(request)
    origin = request.headers.get("origin")
    if origin is None:
        referer = request.headers.get("referer")
        if referer:
            parts = urllib.parse.urlsplit(referer)
            origin = f"{parts.scheme}://{parts.netloc}"
    if origin != own:
        raise CsrfError(f"the form was not posted from this console (origin {origin!r})")


def check_csrf(request: Request, form: dict[str, str], expected: str) -> None:
    check_origin(request)
    presented = form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfError("the form's CSRF token is missing or wrong; reload the page and retry")


def new_pre_csrf() -> str:
    return secrets.token_urlsafe(32)


async def form_fields(request: Request) -> dict[str, str]:
    """The URL-encoded form of a POST (the console sends no other kind), at most 64 KiB."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        raise InputError("the console accepts URL-encoded forms only")
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        raise InputError("the form is too large")
    try:
        pairs = urllib.parse.parse_qsl(
            body.decode("utf-8"), keep_blank_values=True, strict_parsing=False, max_num_fields=500
        )
    except (UnicodeDecodeError, ValueError) as exc:
        raise InputError(f"the form is malformed: {exc}") from exc
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields and key != "flag":
            raise InputError(f"the form names {key!r} twice")
        fields[key] = fields[key] + "\n" + value if key in fields else value
    return fields


SignedIn = Depends(require_session)
Form = Depends(form_fields)
