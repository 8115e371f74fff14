"""Signing in and out of the console.

- People: OIDC authorization code with PKCE (S256). `/ui/login/oidc` stores a sign-in (state,
  nonce, code verifier) in the database, binds it to the browser with a `__Host-` cookie
  holding the state, and sends the browser to the provider. `/ui/auth/callback` accepts the
  code only if the state equals the cookie's and names a stored, unexpired, unused sign-in; it
  redeems the code with the verifier, verifies the id_token with the server's OIDC verification
  (`services.oidc.authenticate_jwt`: issuer, algorithm, key, signature, times, audience, claim
  mapping), and checks the nonce and that the token was issued to this console (`aud`, `azp`).
- Scripts and tests: an API token typed into a form, verified as a bearer token would be.

Both forms are CSRF-protected (the sign-in form by a double-submitted cookie, since there is no
session yet) and failures count against the server's failed-authentication limiter.
"""

from __future__ import annotations

import hmac
import json
import logging
import urllib.parse
import urllib.request
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from modelward.app import ConsoleOidcSettings, ServerRegistry
from modelward.core.principal import Principal
from modelward.errors import ModelwardError, PermissionDeniedError, StorageError
from modelward.interfaces.http.auth import client_address, refuse_if_limited
from modelward.interfaces.web.render import render
from modelward.interfaces.web.session import (
    LOGIN_COOKIE,
    PRE_CSRF_COOKIE,
    SESSION_COOKIE,
    CsrfError,
    Form,
    SignedIn,
    check_csrf,
    check_origin,
    clear_cookie,
    new_pre_csrf,
    own_origin,
    set_cookie,
)
from modelward.services.web_sessions import LOGIN_LIFETIME, WebSession, WebSessionService

router = APIRouter()
log = logging.getLogger("modelward.http.auth")
HOME = "/ui/models"


def _registry(request: Request) -> ServerRegistry:
    registry: ServerRegistry = request.app.state.registry
    return registry


def _failed(request: Request, reason: str) -> None:
    request.app.state.limiter.failed(client_address(request))
    log.warning(
        json.dumps(
            {
                "event": "authentication.failed",
                "client": client_address(request),
                "path": request.url.path,
                "method": request.method,
                "reason": reason,
            },
            sort_keys=True,
        )
    )


def _login_page(request: Request, message: str = "", status_code: int = 200) -> HTMLResponse:
    token = new_pre_csrf()
    oidc = _registry(request).settings.console_oidc
    response = render(
        request,
        "login.html",
        status_code=status_code,
        login_csrf=token,
        oidc_issuer=oidc.issuer if oidc else None,
        message=message,
    )
    set_cookie(response, PRE_CSRF_COOKIE, token, max_age=3600)
    return response


def _signed_in(request: Request, principal: Principal) -> Response:
    registry = _registry(request)
    sessions = WebSessionService(registry.ctx)
    previous = request.cookies.get(SESSION_COOKIE)
    if previous:  # signing in again in this browser ends the session it had
        sessions.end(previous, registry.now())
    new = sessions.start(principal, registry.now())
    response = RedirectResponse(HOME, status_code=303)
    max_age = int((new.expires_at - registry.now()).total_seconds())
    set_cookie(response, SESSION_COOKIE, new.secret, max_age=max_age)
    clear_cookie(response, LOGIN_COOKIE)
    clear_cookie(response, PRE_CSRF_COOKIE)
    return response


@router.get("/login", response_class=HTMLResponse)
def login_page(request: Request) -> HTMLResponse:
    return _login_page(request)


@router.post("/login/token")
def login_with_token(request: Request, form: dict[str, str] = Form) -> Response:
    limiter = request.app.state.limiter
    refuse_if_limited(limiter, client_address(request))
    check_origin(request)
    expected = request.cookies.get(PRE_CSRF_COOKIE, "")
    presented = form.get("csrf_token", "")
    if not expected or not hmac.compare_digest(presented.encode(), expected.encode()):
        raise CsrfError("the sign-in form's CSRF token is missing or wrong; reload and retry")
    token = form.get("token", "").strip()
    try:
        if not token.startswith("mwt_"):
            raise PermissionDeniedError("give an API token (mwt_…)")
        principal = _registry(request).authenticate(token)
    except ModelwardError as exc:
        _failed(request, str(exc))
        return _login_page(request, f"Sign-in refused: {exc}", status_code=401)
    return _signed_in(request, principal)


@router.get("/login/oidc")
def login_with_oidc(request: Request) -> Response:
    registry = _registry(request)
    oidc = registry.settings.console_oidc
    if oidc is None:
        return _login_page(request, "OIDC sign-in is not configured on this server", 404)
    start = WebSessionService(registry.ctx).begin_login(registry.now())
    query = urllib.parse.urlencode(
        {
            "response_type": "code",
            "client_id": oidc.client_id,
            "redirect_uri": _redirect_uri(request),
            "scope": "openid",
            "state": start.state,
            "nonce": start.nonce,
            "code_challenge": start.code_challenge,
            "code_challenge_method": "S256",
        }
    )
    separator = "&" if "?" in oidc.authorize_url else "?"
    response = RedirectResponse(f"{oidc.authorize_url}{separator}{query}", status_code=303)
    set_cookie(response, LOGIN_COOKIE, start.state, max_age=int(LOGIN_LIFETIME.total_seconds()))
    return response


def _redirect_uri(request: Request) -> str:
    return f"{own_origin(request)}/ui/auth/callback"


@router.get("/auth/callback")
def oidc_callback(request: Request, code: str = "", state: str = "", error: str = "") -> Response:
    registry = _registry(request)
    limiter = request.app.state.limiter
    refuse_if_limited(limiter, client_address(request))
    oidc = registry.settings.console_oidc
    cookie_state = request.cookies.get(LOGIN_COOKIE, "")
    try:
        if oidc is None:
            raise PermissionDeniedError("OIDC sign-in is not configured on this server")
        if error:
            raise PermissionDeniedError(f"the identity provider refused: {error[:200]}")
        if not state or not cookie_state or not hmac.compare_digest(state, cookie_state):
            raise PermissionDeniedError("the sign-in's state does not match this browser's")
        pending = WebSessionService(registry.ctx).take_login(state, registry.now())
        if pending is None:
            raise PermissionDeniedError("this sign-in is unknown, expired or already used")
        if not code or len(code) > 2000:
            raise PermissionDeniedError("the identity provider sent no code")
        id_token = _redeem(oidc, code, pending.code_verifier, _redirect_uri(request))
        principal = _verified_principal(registry, oidc, id_token, pending.nonce)
    except ModelwardError as exc:
        _failed(request, str(exc))
        response = _login_page(request, f"Sign-in refused: {exc}", status_code=401)
        clear_cookie(response, LOGIN_COOKIE)
        return response
    return _signed_in(request, principal)


def _redeem(oidc: ConsoleOidcSettings, code: str, verifier: str, redirect_uri: str) -> str:
    """POST the code and the PKCE verifier to the token endpoint; the id_token it returns."""
    body = urllib.parse.urlencode(
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "client_id": oidc.client_id,
            "code_verifier": verifier,
        }
    ).encode("ascii")
    request = urllib.request.Request(
        oidc.token_url,
        data=body,
        headers={"content-type": "application/x-www-form-urlencoded", "accept": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            raw = answer.read(1024 * 1024 + 1)
    except urllib.error.HTTPError as exc:
        raise PermissionDeniedError(f"the token endpoint refused the code ({exc.code})") from None
    except OSError as exc:
        raise StorageError(f"cannot reach the token endpoint {oidc.token_url}: {exc}") from exc
    try:
        data: Any = json.loads(raw)
    except ValueError:
        raise PermissionDeniedError("the token endpoint's answer is not JSON") from None
    id_token = data.get("id_token") if isinstance(data, dict) else None
    if not isinstance(id_token, str):
        raise PermissionDeniedError("the token endpoint sent no id_token")
    return id_token


def _verified_principal(
    registry: ServerRegistry, oidc: ConsoleOidcSettings, id_token: str, nonce: str
) -> Principal:
    from modelward.services.oidc import authenticate_jwt

    principal = authenticate_jwt(registry.ctx, id_token, registry.now(), registry.jwks)
    claims = principal.claims
    if principal.issuer != oidc.issuer:
        raise PermissionDeniedError(f"the id_token is from {principal.issuer}, not {oidc.issuer}")
    presented = str(claims.get("nonce", ""))
    if not presented or not hmac.compare_digest(presented, nonce):
        raise PermissionDeniedError("the id_token's nonce is not this sign-in's")
    if claims.get("aud") != oidc.client_id:
        raise PermissionDeniedError(f"the id_token was not issued to {oidc.client_id!r} alone")
    if "azp" in claims and claims["azp"] != oidc.client_id:
        raise PermissionDeniedError("the id_token's authorized party is another client")
    return principal


@router.post("/logout")
def logout(
    request: Request,
    session: WebSession = SignedIn,
    form: dict[str, str] = Form,
) -> Response:
    check_csrf(request, form, session.csrf_token)
    registry = _registry(request)
    WebSessionService(registry.ctx).end(request.cookies.get(SESSION_COOKIE, ""), registry.now())
    response = RedirectResponse("/ui/login", status_code=303)
    clear_cookie(response, SESSION_COOKIE)
    return response
