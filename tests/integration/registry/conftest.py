"""Fixtures for the registry integration tests: a registry driven through the real `modelward`
console script, its metadata on SQLite or PostgreSQL and its blobs on the filesystem or on S3.

- `backend` ("sqlite" | "postgresql"): PostgreSQL is the server at 127.0.0.1:5432 (trust auth);
  every test gets a fresh database `mw_test_<random>`, created with AUTOCOMMIT and dropped after.
- `blob_backend` ("fs" by default; a test asks for "s3" with indirect parametrisation): S3 is a
  moto server on 127.0.0.1 (one per session), with a fresh bucket per test.

Tests override either fixture's parameters with `@pytest.mark.parametrize(..., indirect=True)`.
"""

from __future__ import annotations

import json
import secrets
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import Engine
from tests.conftest import run_modelward

from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.storage.metadata.ledger_repository import LedgerEvent

PG_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
PG_URL_TEMPLATE = "postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
S3_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
ACTOR = "alice"


@dataclass
class S3Location:
    client: Any
    bucket: str
    prefix: str

    def key(self, digest: str) -> str:
        return f"{self.prefix}/sha256/{digest[:2]}/{digest[2:4]}/{digest}"


@dataclass
class CliRegistry:
    """A registry's environment and ways to use it (the CLI) or look behind its back (SQL, blob
    storage)."""

    home: Path
    env: dict[str, str]
    database_url: str
    s3: S3Location | None

    def run(self, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if actor is not None:
            env["MODELWARD_ACTOR"] = actor
        return run_modelward(*args, env=env)

    def ok(self, *args: str, actor: str | None = None) -> subprocess.CompletedProcess[str]:
        result = self.run(*args, actor=actor)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str, actor: str | None = None) -> Any:
        return json.loads(self.ok(*args, "--json", actor=actor).stdout)

    @contextmanager
    def service(self, actor: str | None = None) -> Iterator[RegistryService]:
        """The registry service in this process (the environment is set here too)."""
        context = open_registry(self.home)
        try:
            yield RegistryService(context, actor=actor)
        finally:
            context.close()

    def audit_log(self) -> list[LedgerEvent]:
        context = open_registry(self.home)
        try:
            return AuditService(context.database, context.ledger_key, context.origin).log()
        finally:
            context.close()

    def sql(self, statement: str, params: dict[str, Any] | None = None) -> list[Any]:
        """Run SQL directly on the registry's database and commit (someone with DB access)."""
        engine = create_engine(self.database_url)
        try:
            with engine.begin() as conn:
                result = conn.execute(text(statement), params or {})
                return list(result) if result.returns_rows else []
        finally:
            engine.dispose()

    def blob_digests(self) -> set[str]:
        if self.s3 is not None:
            pages = self.s3.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.s3.bucket, Prefix=f"{self.s3.prefix}/sha256/"
            )
            return {o["Key"].rsplit("/", 1)[1] for page in pages for o in page.get("Contents", [])}
        root = self.home / "blobs" / "sha256"
        return {p.name for p in root.rglob("*") if p.is_file()} if root.exists() else set()

    def read_blob(self, digest: str) -> bytes:
        if self.s3 is not None:
            obj = self.s3.client.get_object(Bucket=self.s3.bucket, Key=self.s3.key(digest))
            data: bytes = obj["Body"].read()
            return data
        return self._blob_path(digest).read_bytes()

    def tamper_blob(self, digest: str, data: bytes = b"not the original bytes") -> None:
        if self.s3 is not None:
            self.s3.client.put_object(Bucket=self.s3.bucket, Key=self.s3.key(digest), Body=data)
            return
        path = self._blob_path(digest)
        path.chmod(0o644)
        path.write_bytes(data)

    def _blob_path(self, digest: str) -> Path:
        return self.home / "blobs" / "sha256" / digest[:2] / digest[2:4] / digest


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine]:
    engine = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database(pg_admin: Engine) -> Iterator[str]:
    """A fresh, empty PostgreSQL database; its URL."""
    name = f"mw_test_{secrets.token_hex(6)}"
    with pg_admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield PG_URL_TEMPLATE.format(name=name)
    finally:
        with pg_admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(params=["fs"])
def blob_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def registry_env(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    backend: str,
    blob_backend: str,
) -> CliRegistry:
    """The environment of a registry not yet created (also set in this process, so in-process
    services open the same registry)."""
    home = tmp_path / "home"
    env = {"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": ACTOR}
    if backend == "postgresql":
        database_url = request.getfixturevalue("pg_database")
        env["MODELWARD_DATABASE_URL"] = database_url
    else:
        database_url = f"sqlite:///{home / 'registry.db'}"
    s3 = None
    if blob_backend == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_endpoint")
        bucket = f"mw-test-{secrets.token_hex(6)}"
        client = boto3.client(
            "s3",
            endpoint_url=endpoint,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        client.create_bucket(Bucket=bucket)
        s3 = S3Location(client, bucket, "registry")
        env.update(S3_CREDENTIALS)
        env["MODELWARD_BLOB_URL"] = f"s3://{bucket}/registry"
        env["MODELWARD_S3_ENDPOINT_URL"] = endpoint
    for name in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return CliRegistry(home, env, database_url, s3)


@pytest.fixture
def cli_registry(registry_env: CliRegistry) -> CliRegistry:
    """An initialised registry (created in-process: `init` itself is tested through the CLI)."""
    initialize_registry(registry_env.home)
    return registry_env
