"""Every endpoint × every kind of caller: the six roles, no token, an expired and a revoked
token. Denied callers get exactly 401 (not authenticated) or 403 (not allowed); allowed ones
get the endpoint's success status."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from tests.unit.registry.bundles import make_bundle
from tests.unit.server.conftest import ROLES, Served

from modelward.client import Client

ALL = frozenset(ROLES)
PUSHERS = frozenset({"admin", "trainer"})
APPROVERS = frozenset({"admin", "reviewer"})
RELEASERS = frozenset({"admin", "releaser"})
ADMINS = frozenset({"admin"})
UNAUTHENTICATED = ("nobody", "expired", "revoked")
CALLERS = (*ROLES, *UNAUTHENTICATED)
UPLOAD = b"bytes uploaded by the matrix test"
UPLOAD_DIGEST = hashlib.sha256(UPLOAD).hexdigest()


@dataclass(frozen=True)
class Endpoint:
    name: str
    allowed: frozenset[str]
    call: Callable[[Served, dict[str, str], str], httpx.Response]
    ok: tuple[int, ...] = (200,)


@pytest.fixture(scope="module")
def world(served_module: Served, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("matrix")
    client = Client(
        "http://testserver",
        served_module.tokens["trainer"],
        http=served_module.http,
        known_registries=root / "known.json",
    )
    client.push(make_bundle(root / "bundle"), "llama")
    from modelward.services.jobs import JobService

    first = JobService(served_module.registry.ctx).enqueue(
        "verify", {"uri": "models:/llama/1"}, "root"
    )
    assert first.id == 1  # read by the "jobs get" endpoint
    served_module.world = {"files": client.show("models:/llama/1")["manifest"]["files"]}  # type: ignore[attr-defined]
    served_module.bundle_body = {  # type: ignore[attr-defined]
        "files": [
            {"name": f["name"], "digest": f["digest"], "size": f["size"]}
            for f in served_module.world["files"]  # type: ignore[attr-defined]
        ]
    }
    yield served_module


def _get(path: str, **params: Any) -> Callable[[Served, dict[str, str], str], httpx.Response]:
    return lambda s, h, _who: s.http.get(f"/api/v1{path}", headers=h, params=params)


def _post(
    path: str, body: Callable[[Served, str], Any]
) -> Callable[[Served, dict[str, str], str], httpx.Response]:
    return lambda s, h, who: s.http.post(f"/api/v1{path}", headers=h, json=body(s, who))


def _file(s: Served, h: dict[str, str], _who: str) -> httpx.Response:
    digest = s.world["files"][0]["digest"]  # type: ignore[attr-defined]
    return s.http.get(f"/api/v1/models/llama/versions/1/files/{digest}", headers=h)


ENDPOINTS = [
    Endpoint("whoami", ALL, _get("/whoami")),
    Endpoint("models list", ALL, _get("/models")),
    Endpoint("versions list", ALL, _get("/models/llama/versions")),
    Endpoint("resolve", ALL, _get("/resolve", uri="models:/llama/1")),
    Endpoint("show", ALL, _get("/show", uri="models:/llama/1")),
    Endpoint("bundle", ALL, _get("/models/llama/versions/1/bundle")),
    Endpoint("file", ALL, _file),
    Endpoint("decisions", ALL, _get("/decisions", uri="models:/llama/1")),
    Endpoint("releases", ALL, _get("/models/llama/releases/staging")),
    Endpoint("audit log", ALL, _get("/audit/log")),
    Endpoint("audit proof", ALL, _get("/audit/proof/0")),
    Endpoint(
        "audit checkpoint",
        ALL,
        lambda s, h, _w: s.http.post("/api/v1/audit/checkpoint", headers=h),
    ),
    Endpoint("users list", ALL, _get("/users")),
    Endpoint(
        "users add",
        ADMINS,
        _post("/users", lambda _s, who: {"name": f"new-{who}", "role": "viewer"}),
        (201,),
    ),
    Endpoint(
        "upload head",
        PUSHERS,
        lambda s, h, _w: s.http.head(f"/api/v1/uploads/{UPLOAD_DIGEST}", headers=h),
        (200, 404),
    ),
    Endpoint(
        "upload state",
        PUSHERS,
        lambda s, h, _w: s.http.get(f"/api/v1/uploads/{UPLOAD_DIGEST}", headers=h),
    ),
    Endpoint(
        "upload",
        PUSHERS,
        lambda s, h, _w: s.http.put(f"/api/v1/uploads/{UPLOAD_DIGEST}", headers=h, content=UPLOAD),
    ),
    Endpoint(
        "push",
        PUSHERS,
        _post("/models/llama/versions", lambda s, _w: s.bundle_body),  # type: ignore[attr-defined]
    ),
    Endpoint(
        "approve",
        APPROVERS,
        _post("/approvals", lambda _s, _w: {"uri": "models:/llama/1", "environment": "staging"}),
    ),
    Endpoint(
        "jobs enqueue",
        ALL,
        _post("/jobs", lambda _s, _w: {"kind": "verify", "uri": "models:/llama/1"}),
        (202,),
    ),
    Endpoint("jobs get", ALL, _get("/jobs/1")),
    Endpoint(
        "promote",
        RELEASERS,
        _post("/promotions", lambda _s, _w: {"uri": "models:/llama/1", "environment": "staging"}),
    ),
    Endpoint(
        "otlp traces",
        RELEASERS,
        lambda s, h, _w: s.http.post("/v1/traces", headers=h, json={"resourceSpans": []}),
    ),
    Endpoint(
        "otlp metrics",
        RELEASERS,
        lambda s, h, _w: s.http.post("/v1/metrics", headers=h, json={"resourceMetrics": []}),
    ),
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
def test_endpoint_by_caller(world: Served, endpoint: Endpoint, who: str) -> None:
    response = endpoint.call(world, world.headers(who), who)
    if who in UNAUTHENTICATED:
        assert response.status_code == 401, response.text
    elif who in endpoint.allowed:
        assert response.status_code in endpoint.ok, response.text
    else:
        assert response.status_code == 403, response.text
    if response.status_code >= 400 and endpoint.name != "upload head":
        error = response.json()["error"]
        assert error["exit_code"] == 1 and error["type"] == "PermissionDeniedError"


@pytest.mark.parametrize("path", ["rollbacks", "drills"])
@pytest.mark.parametrize("who", CALLERS)
def test_rollback_by_caller(world: Served, who: str, path: str) -> None:
    response = world.http.post(
        f"/api/v1/models/llama/{path}",
        headers=world.headers(who),
        json={"environment": "staging"},
    )
    if who in UNAUTHENTICATED:
        assert response.status_code == 401
    elif who in RELEASERS:
        # nothing to roll back to yet: an input error, not a permission error
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text


CANARY_ENDPOINTS = [
    ("POST", "/canaries/llama/staging", {"candidate": "models:/llama/1"}, RELEASERS),
    ("GET", "/canaries/llama/staging", None, ALL),
    ("POST", "/canaries/llama/staging/verdicts", {"act": False}, RELEASERS),
    ("GET", "/canaries/llama/staging/shadow", None, ALL),
    ("POST", "/canaries/llama/staging/jobs", None, RELEASERS),
    ("GET", "/drift/llama/staging", None, ALL),
    ("POST", "/drift/llama/staging", {"notify": True}, RELEASERS),
    ("GET", "/alerts/deliveries", None, ALL),
]


@pytest.mark.parametrize("who", CALLERS)
@pytest.mark.parametrize("endpoint", CANARY_ENDPOINTS, ids=lambda e: f"{e[0]} {e[1]}")
def test_canary_by_caller(world: Served, endpoint: tuple[Any, ...], who: str) -> None:
    method, path, body, allowed = endpoint
    response = world.http.request(method, f"/api/v1{path}", headers=world.headers(who), json=body)
    if who in UNAUTHENTICATED:
        assert response.status_code == 401
    elif who in allowed:
        # llama has no release in staging: a not-found or input error, never a refusal
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text


def test_every_api_route_is_in_the_matrix(world: Served) -> None:
    """The OpenAPI document lists every operation; a new one must join the matrix."""
    document = world.http.get("/api/v1/openapi.json").json()
    operations = sorted(
        f"{method.upper()} {path}"
        for path, item in document["paths"].items()
        for method in item
        if method in ("get", "post", "put", "head", "delete", "patch")
    )
    # ENDPOINTS, the canary, rollback and drill tests, and the public /registry (the keys
    # clients pin)
    assert len(operations) == len(ENDPOINTS) + len(CANARY_ENDPOINTS) + 3, operations
    public = world.http.get("/api/v1/registry")
    assert public.status_code == 200 and "PRIVATE" not in public.text
