"""Keys pinned at init, `init` that never makes new keys for an existing registry or
re-initialises a damaged database, the `ledger.baseline` written when an older registry is
upgraded, and the checkpoints published outside the database catching a rewritten ledger."""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.unit.registry.bundles import make_bundle

from modelward.errors import (
    InputError,
    PermissionDeniedError,
    RegistryNotFoundError,
    SignatureMismatchError,
)
from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.key_rotation import rotate_key, rotation_statement
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.services.registry import RegistryService, registry_state_checks
from modelward.services.registry_init import initialize_registry
from modelward.services.state_integrity import state_integrity_check
from modelward.services.users import UserService
from modelward.signing.keys import Verifier, generate_private_key, key_hint, write_key_pair
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository, NewEvent

from .conftest import Registry


def _problems(registry: Registry) -> list[str]:
    context = open_registry(registry.home)
    try:
        audit = AuditService.for_registry(context)
        report = audit.verify(state_checks=[registry_state_checks, state_integrity_check])
        return list(report.problems)
    finally:
        context.close()


def _replace_key(home: Path, name: str, key_type: str) -> str:
    path = home / "keys" / name
    path.unlink()
    (home / "keys" / f"{name}.pub").unlink(missing_ok=True)
    key = generate_private_key(key_type)
    write_key_pair(path, key)
    return key_hint(key.public_key())


@pytest.mark.parametrize(
    ("name", "key_type", "what"),
    [("registry.key", "ecdsa-p256", "registry"), ("ledger.key", "ed25519", "ledger")],
)
def test_replaced_keys_are_refused_naming_both_ids(
    registry: Registry, name: str, key_type: str, what: str
) -> None:
    pinned = getattr(registry.context, f"{what}_key_id")
    found = _replace_key(registry.home, name, key_type)
    with pytest.raises(SignatureMismatchError) as refused:
        open_registry(registry.home)
    assert found in str(refused.value) and pinned in str(refused.value)
    assert f"the {what} key" in str(refused.value)
    # and init does not paper over it with new keys
    with pytest.raises(InputError, match=pinned):
        initialize_registry(registry.home)


def test_init_with_the_keys_missing_refuses_instead_of_making_new_ones(registry: Registry) -> None:
    pinned = registry.context.registry_key_id
    (registry.home / "keys" / "registry.key").unlink()
    with pytest.raises(InputError, match=r"registry\.key is missing") as refused:
        initialize_registry(registry.home)
    assert pinned in str(refused.value)
    assert not (registry.home / "keys" / "registry.key").exists()


def test_init_again_with_the_same_keys_changes_nothing(registry: Registry) -> None:
    before = registry.events()
    result = initialize_registry(registry.home)
    assert not result.created
    assert registry.events() == before


@pytest.mark.parametrize("content", [b"", b"not a database at all, just some text"])
def test_an_empty_or_foreign_registry_db_is_refused_not_reinitialised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    monkeypatch.delenv("MODELWARD_DATABASE_URL", raising=False)
    monkeypatch.delenv("MODELWARD_BLOB_URL", raising=False)
    initialize_registry(home)
    keys_before = {p.name: p.read_bytes() for p in (home / "keys").iterdir()}
    (home / "registry.db").write_bytes(content)
    for leftover in ("registry.db-wal", "registry.db-shm"):
        (home / leftover).unlink(missing_ok=True)
    with pytest.raises(InputError, match=r"registry\.db"):
        initialize_registry(home)
    assert (home / "registry.db").read_bytes() == content
    assert {p.name: p.read_bytes() for p in (home / "keys").iterdir()} == keys_before


def _simulate_a_registry_from_before_seals(registry: Registry) -> None:
    registry.sql("UPDATE ledger_events SET seal = NULL")
    for table in ("users", "aliases", "attestations"):
        registry.sql(f"UPDATE {table} SET ledger_seq = NULL")
    registry.sql("DELETE FROM registry_info WHERE key = 'ledger_key_id'")


def test_upgrading_an_older_registry_writes_a_sealed_baseline(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.set_alias("llama", "champion", 1)
    UserService(registry.context).add("bob", "reviewer")
    _simulate_a_registry_from_before_seals(registry)
    # nothing unsealed is trusted until the upgrade, and opening says to run init
    with pytest.raises(PermissionDeniedError):
        UserService(registry.context).add("carol", "viewer")
    with pytest.raises(RegistryNotFoundError, match="run `modelward init`"):
        open_registry(registry.home)
    audit = AuditService.for_registry(registry.context)
    report = audit.verify(state_checks=[state_integrity_check])
    assert any("ledger cannot be trusted" in p for p in report.problems)

    size = len(registry.events())
    initialize_registry(registry.home)
    events = registry.events()
    baseline = events[-1]
    assert (baseline.seq, baseline.action) == (size, "ledger.baseline")
    assert baseline.details["size"] == size and baseline.seal is not None
    assert baseline.details["ledger_key_id"] == registry.context.ledger_key_id
    assert _problems(registry) == []
    UserService(registry.context).add("carol", "viewer")
    assert registry.service.resolve("models:/llama@champion").number == 1
    assert initialize_registry(registry.home) and len(registry.events()) == size + 2  # once

    # events from before the baseline are covered by the root it recorded
    registry.sql("UPDATE ledger_events SET actor = 'mallory' WHERE seq = 1")
    registry.sql("UPDATE ledger_events SET leaf_hash = X'00' WHERE seq = 1")
    problems = _problems(registry)
    assert any("no longer hash to the root it recorded" in p for p in problems), problems


def test_a_rewritten_ledger_without_its_checkpoint_rows_fails_on_the_published_checkpoints(
    registry: Registry,
) -> None:
    """The attacker holds the database and the ledger key (so every seal and checkpoint they
    make is valid) but cannot rewrite the blob store's append-only `checkpoints/`."""
    keeper = registry.context.keeper
    assert keeper is not None
    keeper.every_events = 1
    UserService(registry.context).add("bob", "viewer")
    UserService(registry.context).add("carol", "viewer")
    assert _problems(registry) == []
    events = registry.events()
    forged_keeper = LedgerKeeper(registry.context.ledger_key, registry.context.origin)
    for table in ("ledger_checkpoints", "ledger_nodes", "ledger_events"):
        registry.sql(f"DELETE FROM {table}")
    attacker = Database(f"sqlite:///{registry.home / 'registry.db'}")
    try:
        with attacker.transaction() as conn:
            LedgerRepository(conn, sealer=forged_keeper).append_many(
                NewEvent(
                    "mallory" if e.seq == 1 else e.actor,
                    e.action,
                    e.subject,
                    e.details,
                    datetime.strptime(e.recorded_at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
                )
                for e in events
            )
    finally:
        attacker.dispose()
    registry.sql("DELETE FROM ledger_checkpoints")
    problems = _problems(registry)
    assert problems, "a recomputed ledger passed"
    assert all("published checkpoint checkpoints/" in p for p in problems), problems
    assert any("the ledger was rewritten" in p for p in problems)


def test_rotating_both_keys_keeps_old_signatures_and_checkpoints_verifying(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    old_registry_id = registry.context.registry_key_id
    result = rotate_key(registry.context, "registry")
    assert (result.old_key_id, result.which) == (old_registry_id, "registry")
    rotation = registry.events()[result.seq]
    assert rotation.action == "keys.rotate" and rotation.seal is not None
    # the rotation is signed by the old key over the new key id
    statement = rotation_statement(registry.context.origin, "registry", old_registry_id,
                                   result.new_key_id)  # fmt: skip
    old_key = registry.context.signer.public_key
    Verifier(old_key).verify(base64.b64decode(rotation.details["signature"]), statement)

    context = open_registry(registry.home)
    try:
        assert context.registry_key_id == result.new_key_id
        service = RegistryService(context)
        assert service.pull("models:/llama/1", tmp_path / "out1").number == 1
        ledger = rotate_key(context, "ledger")
    finally:
        context.close()
    assert registry.events()[ledger.seq + 1].action == "ledger.baseline"
    assert _problems(registry) == []
    context = open_registry(registry.home)
    try:
        assert context.ledger_key_id == ledger.new_key_id
        UserService(context).add("bob", "viewer")
        service = RegistryService(context)
        service.push(make_bundle(tmp_path / "b2", seed=2), "llama")
        assert service.pull("models:/llama/2", tmp_path / "out2").number == 2
    finally:
        context.close()
    assert _problems(registry) == []


def test_rotation_needs_an_admin(registry: Registry) -> None:
    UserService(registry.context).add("bob", "releaser")
    with pytest.raises(PermissionDeniedError):
        rotate_key(registry.context, "ledger", actor="bob")
    assert open_registry(registry.home).ledger_key_id == registry.context.ledger_key_id


def test_replaced_keys_with_registry_info_edited_too_fail_the_audit(registry: Registry) -> None:
    pinned = registry.context.registry_key_id
    found = _replace_key(registry.home, "registry.key", "ecdsa-p256")
    registry.sql("UPDATE registry_info SET value = ? WHERE key = 'registry_key_id'", (found,))
    problems = _problems(registry)  # opens: registry_info now agrees with the files
    assert any(found in p and pinned in p and "the ledger recorded" in p for p in problems)
