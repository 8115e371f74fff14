"""Tamper evidence through `modelward audit verify`, on SQLite and PostgreSQL: rows changed or
deleted with SQL behind modelward's back make it exit 1 naming what changed; an untouched registry
exits 0; `--since` accepts this registry's older checkpoint and refuses a foreign or forged one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.unit.registry.bundles import make_bundle

from modelward.core.checkpoint import Checkpoint, sign_checkpoint
from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.registry_init import initialize_registry
from modelward.signing.keys import generate_private_key

from .conftest import CliRegistry

# (what, table, row filter, column, SQL expression of the new value, fragment of the message)
UPDATES = [
    ("version digest", "versions", "number = 1", "root_digest", "'" + "ab" * 32 + "'",
     "root_digest differs"),
    ("version author", "versions", "number = 1", "created_by", "'mallory'",
     "created_by differs"),
    ("alias target", "aliases", "alias = 'champion'", "version_id",
     "(SELECT max(id) FROM versions)", "alias llama@champion"),
    ("event actor", "ledger_events", "seq = 1", "actor", "'mallory'", "event 1"),
    ("event details", "ledger_events", "seq = 2", "details", "replace(details, 'llama', 'x')",
     "event 2"),
]  # fmt: skip


def _populate(reg: CliRegistry, tmp_path: Path) -> None:
    with reg.service() as service:
        service.push(make_bundle(tmp_path / "one", seed=1), "llama")
        service.push(make_bundle(tmp_path / "two", seed=2), "llama")
        service.set_alias("llama", "champion", 1)


def _audit_fails_naming(reg: CliRegistry, fragment: str) -> None:
    result = reg.run("audit", "verify")
    assert result.returncode == 1, (fragment, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert fragment in result.stdout, (fragment, result.stdout)


def test_audit_verify_names_every_change_behind_modelwards_back(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    _populate(reg, tmp_path)
    assert reg.ok("audit", "verify").stdout.startswith("ledger verified: 4 events")

    for _what, table, where, column, new_value, fragment in UPDATES:
        [(original,)] = reg.sql(f"SELECT {column} FROM {table} WHERE {where}")
        reg.sql(f"UPDATE {table} SET {column} = {new_value} WHERE {where}")
        _audit_fails_naming(reg, fragment)
        reg.sql(f"UPDATE {table} SET {column} = :v WHERE {where}", {"v": original})

    [row] = reg.sql("SELECT * FROM ledger_events WHERE seq = 2")
    saved: dict[str, Any] = dict(row._mapping)
    reg.sql("DELETE FROM ledger_events WHERE seq = 2")
    _audit_fails_naming(reg, "event 2 is missing")
    columns = ", ".join(saved)
    reg.sql(f"INSERT INTO ledger_events ({columns}) VALUES ({', '.join(':' + c for c in saved)})",
            saved)  # fmt: skip

    # every change was put back: the registry verifies again
    assert reg.ok("audit", "verify").returncode == 0


def test_audit_verify_since_a_checkpoint(
    cli_registry: CliRegistry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = cli_registry
    _populate(reg, tmp_path)
    old = tmp_path / "old.checkpoint"
    reg.ok("audit", "checkpoint", "--out", str(old))
    with reg.service() as service:
        service.push(make_bundle(tmp_path / "three", seed=3), "llama")
        service.delete_alias("llama", "champion")
    grown = reg.json("audit", "verify", "--since", str(old))
    assert grown["ok"] is True and grown["consistent_with_size"] == 4 and grown["size"] == 6

    # a checkpoint issued by another registry (its own keys and origin)
    other_home = tmp_path / "other"
    with monkeypatch.context() as env:
        for name in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
            env.delenv(name, raising=False)
        initialize_registry(other_home)
        context = open_registry(other_home)
        try:
            foreign = AuditService(context.database, context.ledger_key, context.origin)
            (tmp_path / "foreign.checkpoint").write_text(foreign.checkpoint())
        finally:
            context.close()
    result = reg.run("audit", "verify", "--since", str(tmp_path / "foreign.checkpoint"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "checkpoint" in result.stdout

    # this registry's origin and current root, signed with a key that is not the registry's
    with reg.service() as service:
        origin = service.ctx.origin
    body = Checkpoint(origin, grown["size"], bytes.fromhex(grown["root_hash"]))
    forged = sign_checkpoint(body, origin, generate_private_key("ed25519"))
    (tmp_path / "forged.checkpoint").write_text(forged)
    result = reg.run("audit", "verify", "--since", str(tmp_path / "forged.checkpoint"))
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "checkpoint" in result.stdout
