"""Fixtures for the registry unit tests: a fresh registry in a temporary folder (SQLite file,
filesystem blobs), opened in-process, with helpers to look behind modelward's back."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modelward.services.audit import AuditReport, AuditService
from modelward.services.context import RegistryContext, open_registry
from modelward.services.registry import RegistryService, registry_state_checks
from modelward.services.registry_init import initialize_registry
from modelward.services.state_integrity import state_integrity_check
from modelward.storage.metadata.ledger_repository import LedgerEvent

ACTOR = "alice"


@dataclass
class Registry:
    home: Path
    context: RegistryContext
    service: RegistryService
    _extra: list[RegistryContext] = field(default_factory=list)

    def open_service(self, actor: str | None = None) -> RegistryService:
        """A service on a context of its own (its own engine), as a second process would have."""
        context = open_registry(self.home)
        self._extra.append(context)
        return RegistryService(context, actor=actor)

    @property
    def blob_root(self) -> Path:
        return self.home / "blobs"

    def blob_path(self, digest: str) -> Path:
        return self.blob_root / "sha256" / digest[:2] / digest[2:4] / digest

    def blob_digests(self) -> set[str]:
        return {p.name for p in (self.blob_root / "sha256").rglob("*") if p.is_file()}

    def tamper_blob(self, digest: str, data: bytes = b"not the original bytes") -> None:
        path = self.blob_path(digest)
        path.chmod(0o644)
        path.write_bytes(data)

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """Run SQL on the database file directly, committing (an attacker with file access)."""
        conn = sqlite3.connect(self.home / "registry.db")
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def audit(self) -> AuditService:
        return AuditService.for_registry(self.context)

    def audit_verify(self, since: str | None = None) -> AuditReport:
        return self.audit().verify(
            since, state_checks=[registry_state_checks, state_integrity_check]
        )

    def events(self) -> list[LedgerEvent]:
        return self.audit().log()

    def close(self) -> None:
        for context in [self.context, *self._extra]:
            context.close()


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Registry]:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", ACTOR)
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    reg = Registry(home, context, RegistryService(context))
    try:
        yield reg
    finally:
        reg.close()
