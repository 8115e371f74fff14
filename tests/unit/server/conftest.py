"""A registry served in-process (FastAPI's TestClient, no sockets): one user per role, each
with an API token, plus an expired and a revoked token."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import modelward.services.tokens as tokens_module
from modelward.app import ServerRegistry, ServerSettings
from modelward.interfaces.http.server import create_app
from modelward.services.context import open_registry
from modelward.services.registry_init import initialize_registry
from modelward.services.tokens import TokenService
from modelward.services.users import UserService

ROLES = ("admin", "trainer", "reviewer", "releaser", "auditor", "viewer")


@dataclass
class Served:
    home: Path
    http: TestClient
    registry: ServerRegistry
    tokens: dict[str, str] = field(default_factory=dict)

    def headers(self, who: str) -> dict[str, str]:
        token = self.tokens.get(who)
        return {"authorization": f"Bearer {token}"} if token else {}

    def token_for(self, user: str, **kwargs: object) -> str:
        created = TokenService(self.registry.ctx, actor="root").create(user, **kwargs)  # type: ignore[arg-type]
        return created.token

    def sql(self, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        conn = sqlite3.connect(self.home / "registry.db")
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()


def build_served(root: Path) -> Served:
    """Initialise a registry under `root` as `root` (the first admin) and serve it in-process;
    MODELWARD_HOME and MODELWARD_ACTOR must be set by the caller."""
    home = root / "home"
    initialize_registry(home)
    context = open_registry(home)
    users = UserService(context, actor="root")
    for role in ROLES:
        users.add(role, role)
    settings = ServerSettings(home=home, spool_dir=root, auth_failures_per_minute=1000)
    registry = ServerRegistry(settings, context)
    served = Served(home, TestClient(create_app(registry)), registry)
    for role in ROLES:
        served.tokens[role] = served.token_for(role)
    with pytest.MonkeyPatch.context() as patch:  # made in 2020, valid for an hour
        patch.setattr(tokens_module, "utc_now", lambda: datetime(2020, 1, 1, tzinfo=UTC))
        served.tokens["expired"] = served.token_for("admin", expires_in=timedelta(hours=1))
    served.tokens["revoked"] = served.token_for("admin")
    TokenService(context, actor="root").revoke(served.tokens["revoked"].split("_")[1])
    return served


def _environment(patch: pytest.MonkeyPatch, root: Path) -> None:
    patch.setenv("MODELWARD_HOME", str(root / "home"))
    patch.setenv("MODELWARD_ACTOR", "root")
    patch.delenv("MODELWARD_DATABASE_URL", raising=False)
    patch.delenv("MODELWARD_BLOB_URL", raising=False)


@pytest.fixture
def served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Served]:
    _environment(monkeypatch, tmp_path)
    served = build_served(tmp_path)
    try:
        yield served
    finally:
        served.http.close()
        served.registry.close()


@pytest.fixture(scope="module")
def served_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("served")
    with pytest.MonkeyPatch.context() as patch:
        _environment(patch, root)
        served = build_served(root)
        try:
            yield served
        finally:
            served.http.close()
            served.registry.close()
