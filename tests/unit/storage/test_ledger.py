"""The ledger's storage and audit service on SQLite: appends, proofs, and tampering found by
`verify` after rows are edited behind modelward's back.

The `scenario_*` functions take a `Database` with the tables created; the PostgreSQL integration
test runs the same ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import text
from sqlalchemy.engine import Connection

from modelward.core import merkle
from modelward.core.checkpoint import NoteVerifier, open_checkpoint, parse_tlog_proof
from modelward.errors import (
    InputError,
    NoteFormatError,
    NotFoundError,
    ProofError,
    SignatureMismatchError,
)
from modelward.services.audit import AuditReport, AuditService, verify_proof_file
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.storage.metadata import schema
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import (
    SEALER_INFO,
    LedgerEvent,
    LedgerRepository,
    NewEvent,
    event_leaf_data,
)

ORIGIN = "modelward.test/ledger"
KEY = Ed25519PrivateKey.from_private_bytes(b"\x07" * 32)
T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def _at(i: int) -> datetime:
    return T0 + timedelta(seconds=i)


class SealOnly:
    """Seals appended events with the ledger key, issuing no checkpoints of its own (these
    tests issue them)."""

    def __init__(self, key: Ed25519PrivateKey = KEY) -> None:
        self._keeper = LedgerKeeper(key, ORIGIN)

    def seal(self, leaf_hash: bytes) -> bytes:
        return self._keeper.seal(leaf_hash)

    def appended(self, repo: LedgerRepository, events: object) -> None:
        pass


def sealed(db: Database) -> Database:
    """`db` with appended events sealed by KEY, as `open_registry` sets it up."""
    db.connection_info[SEALER_INFO] = SealOnly()
    return db


def append_events(db: Database, count: int, start: int = 0, actor: str = "alice") -> None:
    for i in range(start, start + count):
        with db.transaction() as conn:
            LedgerRepository(conn).append(
                actor, "model.push", f"models:/m/{i}", {"version": i, "files": ["a"]}, _at(i)
            )


def service(db: Database, key: Ed25519PrivateKey = KEY) -> AuditService:
    return AuditService(db, key, ORIGIN, clock=lambda: T0)


def tamper(db: Database, sql: str, **params: object) -> None:
    with db.engine.begin() as conn:
        conn.execute(text(sql), params)


def _has(report: AuditReport, fragment: str) -> bool:
    return any(fragment in problem for problem in report.problems)


# -- scenarios (shared with the PostgreSQL integration test) ------------------------------------


def scenario_append_and_prove(db: Database) -> None:
    audit = service(db)
    assert audit.verify().ok and audit.verify().size == 0
    empty = open_checkpoint(audit.checkpoint(), audit.verifier)
    assert (empty.size, empty.root_hash) == (0, merkle.EMPTY_ROOT)
    with pytest.raises(NotFoundError):
        audit.proof(0)

    append_events(db, 37)
    events = audit.log()
    assert [e.seq for e in events] == list(range(37))
    assert events[5].details == {"version": 5, "files": ["a"]}
    assert events[5].recorded_at == "2024-05-01T12:00:05.000000Z"
    assert [e.seq for e in audit.log(start=30, limit=3)] == [30, 31, 32]
    assert LedgerEvent.from_dict(events[3].to_dict()) == events[3]
    leaves = [merkle.leaf_hash(e.leaf_data()) for e in events]
    assert leaves == [e.leaf_hash for e in events]

    checkpoint = open_checkpoint(audit.checkpoint(), audit.verifier)
    assert checkpoint.size == 37
    assert checkpoint.root_hash == merkle.root_from_leaves(leaves)
    with db.read() as conn:
        repo = LedgerRepository(conn)
        assert repo.size() == repo.count() == 37
        assert repo.node(0, 36) == leaves[36]
        assert repo.node(5, 0) == merkle.root_from_leaves(leaves[:32])
        with pytest.raises(ProofError):
            repo.node(5, 1)
        latest = repo.latest_checkpoint()
        assert latest is not None and latest.size == 37
    for seq in (0, 17, 31, 32, 36):
        proof_text = audit.proof(seq)
        assert parse_tlog_proof(proof_text).index == seq
        checked = verify_proof_file(proof_text, KEY.public_key())
        assert checked.leaf_data == events[seq].leaf_data()
        assert checked.checkpoint.size == 37
        assert audit.verify_proof_file(proof_text, events[seq].leaf_data()).index == seq
        with pytest.raises(ProofError):
            verify_proof_file(proof_text, KEY.public_key(), events[(seq + 1) % 37].leaf_data())
    with pytest.raises(SignatureMismatchError):
        verify_proof_file(audit.proof(3), Ed25519PrivateKey.generate().public_key())
    with pytest.raises(NotFoundError):
        audit.proof(37)
    report = audit.verify()
    assert report.ok, report.problems
    assert report.size == 37 and report.checkpoints_checked >= 2
    assert AuditReport.from_dict(report.to_dict()) == report


def scenario_tampering_is_reported(db: Database) -> None:
    audit = service(db)
    append_events(db, 20)
    audit.checkpoint()
    assert audit.verify().ok

    tamper(db, "UPDATE ledger_events SET details = :d WHERE seq = 3", d='{"version":999}')
    report = audit.verify()
    assert not report.ok
    assert _has(report, "event 3: details do not match their recorded digest")

    tamper(db, "UPDATE ledger_events SET actor = 'mallory' WHERE seq = 4")
    assert _has(audit.verify(), "event 4: stored fields do not hash to its recorded leaf")

    tamper(db, "UPDATE ledger_events SET leaf_hash = :h WHERE seq = 5", h=b"\x00" * 32)
    assert _has(audit.verify(), "event 5: stored fields do not hash to its recorded leaf")


def scenario_consistent_rewrite_is_reported(db: Database) -> None:
    """A rewrite that also fixes the leaf hash still breaks the stored tree and the checkpoint."""
    audit = service(db)
    append_events(db, 12)
    audit.checkpoint()
    with db.read() as conn:
        event = LedgerRepository(conn).event(6)
    leaf = merkle.leaf_hash(
        event_leaf_data(
            6, event.recorded_at, "mallory", event.action, event.subject, event.details_digest
        )
    )
    tamper(db, "UPDATE ledger_events SET actor = 'mallory', leaf_hash = :h WHERE seq = 6", h=leaf)
    report = audit.verify()
    assert not report.ok
    assert not _has(report, "event 6: stored fields")
    assert _has(report, "event 6: its seal is not the ledger key's")
    assert _has(report, "tree node (level 1, index 3) does not match events")
    assert _has(report, "the events no longer hash to its signed root")


def scenario_deletions_are_reported(db: Database) -> None:
    audit = service(db)
    append_events(db, 16)
    audit.checkpoint()
    tamper(db, "DELETE FROM ledger_events WHERE seq = 9")
    report = audit.verify()
    assert _has(report, "event 9 is missing")
    assert not report.ok

    tamper(db, "DELETE FROM ledger_events WHERE seq >= 14")
    report = audit.verify()
    assert _has(report, "events were removed")
    assert _has(report, "covers no events")

    tamper(db, "DELETE FROM ledger_nodes WHERE level = 2 AND idx = 0")
    assert _has(audit.verify(), "tree node (level 2, index 0) is missing")


def scenario_consistency_and_forks(db: Database, fork_db: Database) -> None:
    audit = service(db)
    append_events(db, 10)
    old = audit.checkpoint()
    append_events(db, 13, start=10)
    report = audit.verify(since_checkpoint_text=old)
    assert report.ok, report.problems
    assert report.consistent_with_size == 10
    same = audit.checkpoint()
    assert audit.verify(since_checkpoint_text=same).consistent_with_size == 23

    # a log that shares the first 5 events and then diverges, signed by the same key
    fork = service(fork_db)
    append_events(fork_db, 5)
    append_events(fork_db, 7, start=5, actor="mallory")
    forked = fork.checkpoint()
    report = audit.verify(since_checkpoint_text=forked)
    assert not report.ok
    assert _has(report, "not an extension of the given checkpoint (size 12)")
    assert report.consistent_with_size is None

    append_events(fork_db, 20, start=12)
    longer = fork.checkpoint()
    assert _has(audit.verify(since_checkpoint_text=longer), "truncated")

    stranger = AuditService(db, Ed25519PrivateKey.generate(), ORIGIN).checkpoint()
    assert _has(audit.verify(since_checkpoint_text=stranger), "given checkpoint")
    other_key = NoteVerifier.from_public_key(ORIGIN, Ed25519PrivateKey.generate().public_key())
    report = audit.verify(public_key=other_key)
    assert _has(report, "issued checkpoint") and not report.ok

    with pytest.raises(NoteFormatError):
        audit.verify(since_checkpoint_text="not a checkpoint")


def scenario_state_checks_and_inputs(db: Database) -> None:
    audit = service(db)
    append_events(db, 3)
    seen: list[int] = []

    def registry_check(conn: Connection) -> list[str]:
        seen.append(LedgerRepository(conn).size())
        return ["alias champion points at a version the ledger never recorded"]

    report = audit.verify(state_checks=[registry_check, lambda conn: []])
    assert seen == [3]
    assert report.problems == ("alias champion points at a version the ledger never recorded",)
    assert not report.ok

    with db.transaction() as conn:
        repo = LedgerRepository(conn)
        with pytest.raises(InputError):
            repo.append("alice", "x", "s", {}, datetime(2024, 1, 1))
        with pytest.raises(InputError):
            repo.append("", "x", "s", {}, T0)
        with pytest.raises(InputError):
            repo.append("alice", "x", "s", {"bad": float("nan")}, T0)
    with pytest.raises(RuntimeError), db.transaction() as conn:
        LedgerRepository(conn).append("alice", "model.push", "models:/m/9", {}, T0)
        raise RuntimeError("the registry change failed")
    with db.transaction() as conn:
        added = LedgerRepository(conn).append_many(
            [NewEvent("bob", "alias.set", f"models:/m@a{i}", {"i": i}, _at(i)) for i in range(5)]
        )
    assert [e.seq for e in added] == [3, 4, 5, 6, 7]
    assert audit.verify().ok


# -- SQLite runs ----------------------------------------------------------------------------------


def _sqlite(path: Path) -> Database:
    db = Database(f"sqlite:///{path}")
    schema.metadata.create_all(db.engine)
    return sealed(db)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = _sqlite(tmp_path / "registry.db")
    yield database
    database.dispose()


def test_append_and_prove(db: Database) -> None:
    scenario_append_and_prove(db)


def test_tampering_is_reported(db: Database) -> None:
    scenario_tampering_is_reported(db)


def test_consistent_rewrite_is_reported(db: Database) -> None:
    scenario_consistent_rewrite_is_reported(db)


def test_deletions_are_reported(db: Database) -> None:
    scenario_deletions_are_reported(db)


def test_consistency_and_forks(db: Database, tmp_path: Path) -> None:
    fork_db = _sqlite(tmp_path / "fork.db")
    scenario_consistency_and_forks(db, fork_db)
    fork_db.dispose()


def test_state_checks_and_inputs(db: Database) -> None:
    scenario_state_checks_and_inputs(db)


def test_tampered_checkpoint_row_is_reported(db: Database) -> None:
    audit = service(db)
    append_events(db, 4)
    audit.checkpoint()
    tamper(db, "UPDATE ledger_checkpoints SET note = replace(note, '\n4\n', '\n3\n')")
    report = audit.verify()
    assert _has(report, "issued checkpoint #1 (size 4)")
    assert not report.ok


def test_verify_lists_a_bounded_number_of_problems(db: Database) -> None:
    audit = service(db)
    append_events(db, 70)
    tamper(db, "UPDATE ledger_events SET actor = 'mallory'")
    report = audit.verify()
    assert len(report.problems) == 50
    assert report.omitted_problems > 0
    assert report.to_dict()["ok"] is False
