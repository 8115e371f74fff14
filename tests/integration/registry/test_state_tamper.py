"""State rows and the ledger tampered with SQL behind modelward's back, on SQLite and PostgreSQL,
through the real `modelward` console script: each attack is refused where the row would be used
(exit 1, naming the row) and named by `audit verify`. Also `init` refusing to make new keys for a
registry that exists (a second client of a shared PostgreSQL registry) or to re-initialise an
empty registry.db (exit 2)."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward
from tests.unit.registry.bundles import make_bundle

from modelward.core.canonical import canonical_json
from modelward.core.release import Release
from modelward.services.context import open_registry
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerEvent, LedgerRepository, NewEvent

from .conftest import CliRegistry

ALWAYS_TRUE = "rules:\n  - id: anything-goes\n    expression: 'true'\n    message: never fails\n"
NOTHING_PASSES = "rules:\n  - id: never\n    expression: 'false'\n    message: nothing passes\n"


def _audit_names(reg: CliRegistry, *fragments: str) -> None:
    result = reg.run("audit", "verify")
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in result.stdout, (fragment, result.stdout)


def _push_two(reg: CliRegistry, tmp_path: Path) -> None:
    for seed in (1, 2):
        reg.ok("push", str(make_bundle(tmp_path / f"b{seed}", seed=seed)), "--model", "llama")


def test_inserted_admin_and_raised_role_are_refused(cli_registry: CliRegistry) -> None:
    reg = cli_registry
    reg.ok("users", "add", "bob", "--role", "viewer")
    reg.sql("INSERT INTO users VALUES ('mallory', 'admin', 'now', 'alice', NULL)")
    reg.sql("UPDATE users SET role = 'admin' WHERE name = 'bob'")
    for actor in ("mallory", "bob"):
        refused = reg.run("users", "add", "eve", "--role", "admin", actor=actor)
        assert_clean_error(refused, 1, f"user {actor}")
    _audit_names(reg, "user mallory: not in the ledger", "user bob: edited behind modelward's back")
    assert "eve" not in reg.ok("users", "list").stdout


def test_always_true_policy_and_moved_alias_are_refused(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    _push_two(reg, tmp_path)
    reg.ok("alias", "set", "llama", "champion", "1")
    policy = tmp_path / "never.yaml"
    policy.write_text(NOTHING_PASSES)
    reg.ok("policy", "set", "staging", str(policy))
    assert reg.run("promote", "models:/llama/1", "--to", "staging").returncode == 1

    reg.sql("UPDATE gate_policies SET text = :t", {"t": ALWAYS_TRUE})
    reg.sql("UPDATE aliases SET version_id = (SELECT max(id) FROM versions)")
    assert_clean_error(
        reg.run("promote", "models:/llama/1", "--to", "staging"), 1, "policy of staging"
    )
    assert_clean_error(
        reg.run("pull", "models:/llama@champion", "--out", str(tmp_path / "out")),
        1,
        "models:/llama@champion",
    )
    assert not (tmp_path / "out").exists()
    assert reg.sql("SELECT count(*) FROM gate_releases") == [(0,)]
    _audit_names(reg, "policy row 1: edited", "alias llama@champion: edited")


def test_edited_release_is_not_rolled_back_to_and_deleted_version_is_named(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    _push_two(reg, tmp_path)
    for seed in (3, 4):
        reg.ok("push", str(make_bundle(tmp_path / f"b{seed}", seed=seed)), "--model", "llama")
    policy = tmp_path / "open.yaml"
    policy.write_text(ALWAYS_TRUE)
    reg.ok("policy", "set", "staging", str(policy))
    for number in (1, 2):
        reg.ok("promote", f"models:/llama/{number}", "--to", "staging")

    [(record,)] = reg.sql("SELECT record FROM gate_releases WHERE release_id = 'rel-1'")
    original = Release.from_dict(json.loads(record))
    [(version_id, root)] = reg.sql("SELECT id, root_digest FROM versions WHERE number = 3")
    state = replace(original.state, version=3, bundle_digest="sha256:" + root)
    forged = replace(original, state=state)
    reg.sql(
        "UPDATE gate_releases SET version_id = :v, record = :r, state_digest = :d "
        "WHERE release_id = 'rel-1'",
        {
            "v": version_id,
            "r": canonical_json(forged.to_dict()).decode(),
            "d": forged.state_digest(),
        },
    )
    assert_clean_error(reg.run("rollback", "llama", "--env", "staging"), 1, "release rel-1")
    assert reg.sql("SELECT count(*) FROM gate_releases") == [(2,)]

    [(version_id,)] = reg.sql("SELECT id FROM versions WHERE number = 4")
    for statement in (
        "DELETE FROM attestations WHERE version_id = :v",
        "DELETE FROM version_files WHERE version_id = :v",
        "DELETE FROM versions WHERE id = :v",
    ):
        reg.sql(statement, {"v": version_id})
    _audit_names(reg, "release rel-1: edited", "models:/llama/4: the version was deleted")


def test_rewritten_ledger_without_checkpoint_rows_fails_verify(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    """Even an attacker holding the database and the ledger key (valid seals, valid checkpoint
    rows) cannot make a rewritten ledger pass: the published checkpoints disagree."""
    reg = cli_registry
    _push_two(reg, tmp_path)
    reg.ok("audit", "checkpoint")  # an explicit checkpoint is published too
    assert reg.ok("audit", "verify").returncode == 0
    published = reg.home / "blobs" / "checkpoints"
    assert len(list(published.iterdir())) == 2  # at init (size 1) and the explicit one

    context = open_registry(reg.home)
    try:
        events = _events(context.database)
        forger = LedgerKeeper(context.ledger_key, context.origin)
    finally:
        context.close()
    for table in ("ledger_checkpoints", "ledger_nodes", "ledger_events"):
        reg.sql(f"DELETE FROM {table}")
    attacker = Database(reg.database_url)
    try:
        with attacker.transaction() as conn:
            LedgerRepository(conn, sealer=forger).append_many(
                NewEvent(
                    "mallory" if event.seq == 1 else event.actor,
                    event.action,
                    event.subject,
                    event.details,
                    datetime.strptime(event.recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                        tzinfo=UTC
                    ),
                )
                for event in events
            )
    finally:
        attacker.dispose()
    reg.sql("DELETE FROM ledger_checkpoints")
    _audit_names(reg, "published checkpoint checkpoints/", "the ledger was rewritten")


def _events(database: Database) -> list[LedgerEvent]:
    with database.read() as conn:
        return list(LedgerRepository(conn).events())


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_second_init_against_a_shared_postgresql_registry_refuses(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    """A second client with the same MODELWARD_DATABASE_URL but no keys (or other keys) of its
    own: init refuses (exit 2) instead of making new keys."""
    reg = cli_registry
    other_home = tmp_path / "other"
    env = {**reg.env, "MODELWARD_HOME": str(other_home)}
    assert_clean_error(run_modelward("init", env=env), 2, "a registry already exists")
    assert not (other_home / "keys" / "registry.key").exists()
    # with keys of its own it is refused too, naming both key ids
    (other_home / "keys").mkdir(parents=True, exist_ok=True)
    generated = run_modelward(
        "keys", "generate", "--out", str(other_home / "keys" / "registry.key"), env=env
    )
    assert generated.returncode == 0, generated.stderr
    shutil.copy(reg.home / "keys" / "ledger.key", other_home / "keys" / "ledger.key")
    refused = run_modelward("init", env=env)
    assert_clean_error(refused, 2, "this registry pinned")
    [(pinned,)] = reg.sql("SELECT value FROM registry_info WHERE key = 'registry_key_id'")
    assert pinned in refused.stderr
    assert reg.ok("audit", "verify").returncode == 0
    assert "pushed" not in reg.ok("audit", "log").stdout


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_init_with_the_keys_gone_refuses(cli_registry: CliRegistry) -> None:
    reg = cli_registry
    shutil.rmtree(reg.home / "keys")
    assert_clean_error(reg.run("init"), 2, "is missing from")
    assert not (reg.home / "keys" / "registry.key").exists()


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_empty_registry_db_is_refused(registry_env: CliRegistry) -> None:
    reg = registry_env
    reg.ok("init")
    (reg.home / "registry.db").write_bytes(b"")
    for leftover in ("registry.db-wal", "registry.db-shm"):
        (reg.home / leftover).unlink(missing_ok=True)
    assert_clean_error(reg.run("init"), 2, "is empty (zero bytes)")
    assert (reg.home / "registry.db").stat().st_size == 0
    assert_clean_error(reg.run("users", "list"), 2, "")
