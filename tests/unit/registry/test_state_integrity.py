"""Verify before trust, for state rows and the ledger: every attack here is a row or event
written with SQL behind modelward's back (an attacker who can write the database file but holds
no key), and each is refused where the row would be used and named by `audit verify`."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import pytest
from tests.unit.registry.bundles import make_bundle

from modelward.core.canonical import canonical_json
from modelward.core.release import Release
from modelward.core.roles import Action
from modelward.errors import PermissionDeniedError, VerificationError
from modelward.services.audit import AuditService
from modelward.services.gate import GateService
from modelward.services.gate_facts import gather_facts
from modelward.services.registry import registry_state_checks
from modelward.services.releases import ReleaseService
from modelward.services.state_integrity import (
    latest_drill_problem,
    state_integrity_check,
    trusted_approvals,
    trusted_role,
)
from modelward.services.users import UserService, require
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository, StoredCheckpoint

from .conftest import Registry

ALWAYS_TRUE = b"""
rules:
  - id: anything-goes
    expression: "true"
    message: never fails
"""
NOTHING_PASSES = b"""
rules:
  - id: never
    expression: "false"
    message: nothing passes
"""


def _verify(registry: Registry) -> list[str]:
    audit = AuditService.for_registry(registry.context)
    report = audit.verify(state_checks=[registry_state_checks, state_integrity_check])
    return list(report.problems)


def _has(problems: list[str], fragment: str) -> bool:
    return any(fragment in p for p in problems)


def test_an_untouched_registry_verifies(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.set_alias("llama", "champion", 1)
    UserService(registry.context).add("bob", "reviewer")
    assert _verify(registry) == []
    events = registry.events()
    assert all(e.seal is not None for e in events)
    assert events[0].details["ledger_key_id"] == registry.context.ledger_key_id
    assert events[0].details["registry_key_id"] == registry.context.registry_key_id


def test_an_inserted_admin_is_refused_and_named(registry: Registry) -> None:
    registry.sql("INSERT INTO users VALUES ('mallory', 'admin', 'now', 'alice', NULL)")
    with pytest.raises(PermissionDeniedError, match="user mallory"):
        UserService(registry.context, actor="mallory").add("eve", "admin")
    assert _has(_verify(registry), "user mallory: not in the ledger")


def test_an_inserted_admin_pointing_at_a_real_event_is_refused(registry: Registry) -> None:
    # the attacker points the row at the init event, which anchors only alice
    registry.sql("INSERT INTO users VALUES ('mallory', 'admin', 'now', 'alice', 0)")
    with registry.context.database.read() as conn:
        role, problem = trusted_role(conn, "mallory")
        assert role is None and problem is not None and "does not anchor it" in problem
        with pytest.raises(PermissionDeniedError):
            require(conn, "mallory", Action.ADD_USER)


def test_a_role_raised_with_sql_is_refused(registry: Registry) -> None:
    UserService(registry.context).add("bob", "viewer")
    registry.sql("UPDATE users SET role = 'admin' WHERE name = 'bob'")
    with pytest.raises(PermissionDeniedError, match="user bob"):
        UserService(registry.context, actor="bob").add("eve", "admin")
    assert _has(_verify(registry), "user bob: edited behind modelward's back")


def test_a_stale_role_row_restored_after_a_demotion_is_refused(registry: Registry) -> None:
    users = UserService(registry.context)
    users.add("bob", "admin")
    [(old_seq,)] = registry.sql("SELECT ledger_seq FROM users WHERE name = 'bob'")
    users.add("bob", "viewer")
    # put back the row as it was when bob was an admin, pointing at that (genuine) event
    registry.sql("UPDATE users SET role = 'admin', ledger_seq = ? WHERE name = 'bob'", (old_seq,))
    with registry.context.database.read() as conn:
        role, problem = trusted_role(conn, "bob")
    assert role is None and problem is not None and "not the current one" in problem


def test_a_policy_replaced_by_an_always_true_rule_fails_closed(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    gate = GateService(registry.context)
    gate.set_policy("staging", NOTHING_PASSES)
    assert not gate.promote("models:/llama/1", "staging").decision.allowed
    registry.sql(
        "UPDATE gate_policies SET text = ? WHERE environment = 'staging'",
        (ALWAYS_TRUE.decode(),),
    )
    with pytest.raises(VerificationError, match="policy of staging"):
        gate.promote("models:/llama/1", "staging")
    assert _has(_verify(registry), "policy row 1: edited")

    # a newer policy row inserted (instead of editing) is refused as well
    registry.sql(
        "INSERT INTO gate_policies (environment, digest, text, created_at, created_by) "
        "VALUES ('staging', 'x', ?, 'now', 'alice')",
        (ALWAYS_TRUE.decode(),),
    )
    with pytest.raises(VerificationError, match="policy of staging"):
        gate.show_policy("staging")
    assert _has(_verify(registry), "policy row 2: not in the ledger")


def test_a_deleted_policy_does_not_fall_back_to_the_default(
    registry: Registry, tmp_path: Path
) -> None:
    gate = GateService(registry.context)
    gate.set_policy("staging", ALWAYS_TRUE)
    registry.sql("DELETE FROM gate_policies")
    with pytest.raises(VerificationError, match="was deleted"):
        gate.show_policy("staging")
    assert _has(_verify(registry), "policy row 1: deleted")


def test_an_approval_by_a_non_user_does_not_count(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    UserService(registry.context).add("rev", "reviewer")
    GateService(registry.context, actor="rev").approve("models:/llama/1", "staging")
    for reviewer in ("ghost", "rev"):
        registry.sql(
            "INSERT INTO gate_approvals (version_id, environment, reviewer, comment, sign_off, "
            "created_at) VALUES (1, 'staging', ?, '', 1, 'now')",
            (reviewer,),
        )
    with registry.context.database.read() as conn:
        counted = trusted_approvals(conn, 1, "staging")
    assert [(a.reviewer, a.id) for a in counted] == [("rev", 1)]
    problems = _verify(registry)
    assert _has(problems, "approval 2: not in the ledger")
    assert _has(problems, "approval 3: not in the ledger")


def test_an_approval_by_a_removed_user_does_not_count(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    UserService(registry.context).add("rev", "reviewer")
    GateService(registry.context, actor="rev").approve("models:/llama/1", "staging")
    registry.sql("UPDATE users SET role = 'admin' WHERE name = 'rev'")
    with registry.context.database.read() as conn:
        assert trusted_approvals(conn, 1, "staging") == []


def _two_releases(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.push(make_bundle(tmp_path / "b2", seed=2), "llama")
    gate = GateService(registry.context)
    gate.set_policy("staging", ALWAYS_TRUE)
    assert gate.promote("models:/llama/1", "staging").release is not None
    assert gate.promote("models:/llama/2", "staging").release is not None


def test_a_release_row_edited_to_another_version_is_not_rolled_back_to(
    registry: Registry, tmp_path: Path
) -> None:
    _two_releases(registry, tmp_path)
    registry.service.push(make_bundle(tmp_path / "b3", seed=3), "llama")
    # a consistent forgery: the record's state and digests rewritten to version 3
    [(record,)] = registry.sql("SELECT record FROM gate_releases WHERE release_id = 'rel-1'")
    original = Release.from_dict(json.loads(record))
    [(root,)] = registry.sql("SELECT root_digest FROM versions WHERE number = 3")
    state = replace(original.state, version=3, bundle_digest="sha256:" + root)
    forged = replace(original, state=state)
    registry.sql(
        "UPDATE gate_releases SET version_id = 3, record = ?, state_digest = ? "
        "WHERE release_id = 'rel-1'",
        (canonical_json(forged.to_dict()).decode(), forged.state_digest()),
    )
    with pytest.raises(VerificationError, match="release rel-1"):
        ReleaseService(registry.context).rollback("llama", "staging")
    assert _has(_verify(registry), "release rel-1: edited")
    # nothing was changed by the refused rollback
    assert registry.sql("SELECT count(*) FROM gate_releases") == [(2,)]


def test_a_deleted_current_release_is_noticed(registry: Registry, tmp_path: Path) -> None:
    _two_releases(registry, tmp_path)
    registry.sql("DELETE FROM gate_releases WHERE release_id = 'rel-2'")
    with pytest.raises(VerificationError, match="not the current one"):
        ReleaseService(registry.context).rollback("llama", "staging")
    assert _has(_verify(registry), "release rel-2: deleted")


def test_a_deleted_version_is_named(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.push(make_bundle(tmp_path / "b2", seed=2), "llama")
    for table in ("attestations", "version_files"):
        registry.sql(f"DELETE FROM {table} WHERE version_id = 2")
    registry.sql("DELETE FROM versions WHERE id = 2")
    problems = _verify(registry)
    assert _has(problems, "models:/llama/2: the version was deleted")
    assert _has(problems, ": deleted behind modelward's back")  # its attestations too


def test_an_alias_moved_in_the_database_is_not_pulled(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.push(make_bundle(tmp_path / "b2", seed=2), "llama")
    registry.service.set_alias("llama", "champion", 1)
    registry.sql("UPDATE aliases SET version_id = 2 WHERE alias = 'champion'")
    with pytest.raises(VerificationError, match="models:/llama@champion"):
        registry.service.pull("models:/llama@champion", tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert _has(_verify(registry), "alias llama@champion: edited")
    registry.sql("UPDATE aliases SET version_id = 1 WHERE alias = 'champion'")
    assert registry.service.pull("models:/llama@champion", tmp_path / "out").number == 1


def test_a_deleted_alias_put_back_after_its_deletion_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.service.set_alias("llama", "champion", 1)
    [row] = registry.sql("SELECT * FROM aliases")
    registry.service.delete_alias("llama", "champion")
    registry.sql("INSERT INTO aliases VALUES (?, ?, ?, ?, ?, ?)", tuple(row))
    with pytest.raises(VerificationError, match="not the current one"):
        registry.service.resolve("models:/llama@champion")
    assert _has(_verify(registry), "alias llama@champion: not in the ledger")


def test_an_attestation_inserted_or_edited_is_named(registry: Registry, tmp_path: Path) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    registry.sql("UPDATE attestations SET document = document || ' ' WHERE id = 1")
    registry.sql(
        "INSERT INTO attestations (version_id, kind, document, digest, created_at, created_by) "
        "VALUES (1, 'scan', '{}', 'ab', 'now', 'alice')"
    )
    problems = _verify(registry)
    assert _has(problems, "attestation 1: edited")
    assert _has(problems, "not in the ledger (inserted")


def test_an_event_appended_without_the_key_is_named_and_anchors_nothing(
    registry: Registry,
) -> None:
    # an attacker appends a well-formed event (leaf, tree nodes and all) but cannot seal it
    raw = Database(f"sqlite:///{registry.home / 'registry.db'}")
    try:
        registry.sql("INSERT INTO users VALUES ('mallory', 'admin', 'now', 'alice', NULL)")
        with raw.transaction() as conn:
            event = LedgerRepository(conn).append(
                "alice", "user.add", "user:mallory", {"user": "mallory"}, datetime.now(UTC)
            )
        registry.sql("UPDATE users SET ledger_seq = ? WHERE name = 'mallory'", (event.seq,))
    finally:
        raw.dispose()
    problems = _verify(registry)
    assert _has(problems, f"event {event.seq}: carries no seal")
    with pytest.raises(PermissionDeniedError, match="carries no seal"):
        UserService(registry.context, actor="mallory").add("eve", "admin")


def test_checkpoints_are_issued_and_published_without_asking(
    registry: Registry, tmp_path: Path
) -> None:
    keeper = registry.context.keeper
    assert keeper is not None
    published = sorted((registry.home / "blobs" / "checkpoints").iterdir())
    assert [p.name.split("-")[0] for p in published] == ["0000000000000001"]  # at init
    keeper.every_events = 2
    users = UserService(registry.context)
    for name in ("u1", "u2", "u3", "u4"):
        users.add(name, "viewer")
    assert [c.size for c in _db_checkpoints(registry)] == [1, 3, 5]
    names = sorted(p.name for p in (registry.home / "blobs" / "checkpoints").iterdir())
    assert [int(n.split("-")[0]) for n in names] == [1, 3, 5]


def _db_checkpoints(registry: Registry) -> list[StoredCheckpoint]:
    with registry.context.database.read() as conn:
        return list(LedgerRepository(conn).checkpoints())


def test_a_passing_drill_inserted_with_sql_does_not_count(
    registry: Registry, tmp_path: Path
) -> None:
    registry.service.push(make_bundle(tmp_path / "b1", seed=1), "llama")
    gate = GateService(registry.context)
    first = gate.config.environments[0]
    report = json.dumps({"at": datetime.now(UTC).isoformat(), "passed": True, "steps": []})
    registry.sql(
        "INSERT INTO gate_drills (model, environment, passed, report, created_at, created_by) "
        "VALUES ('llama', ?, 1, ?, 'now', 'alice')",
        (first, report),
    )
    with registry.context.database.read() as conn:
        assert latest_drill_problem(conn, "llama", first) is not None
        record = registry.service.resolve("models:/llama/1")
        gathered = gather_facts(
            registry.context,
            conn,
            record,
            "production",
            gate.config.path,
            risk_tier=None,
            now=datetime.now(UTC),
        )
    assert gathered.facts["rollback_drill"] is None  # absent: a rule needing it fails closed
    assert _has(_verify(registry), "drill 1: not in the ledger")
