"""Ledger speed on a SQLite file, against the targets: 2,000 appends/s, an inclusion proof at
1,000,000 events in under 5 ms, `audit verify` over 1,000,000 events in under 60 s.

    .venv/bin/python benchmarks/bench_ledger.py [--events 1000000] [--dir DIR]

Prints each figure and its ratio to the target (> 1.0 means the target is met). Not a test.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core import merkle
from modelward.core.checkpoint import open_checkpoint
from modelward.services.audit import AuditService, verify_proof_file
from modelward.services.ledger_keeper import LedgerKeeper
from modelward.storage.metadata import schema
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import SEALER_INFO, LedgerRepository, NewEvent

TARGET_APPENDS_PER_S = 2_000
TARGET_PROOF_MS = 5.0
TARGET_VERIFY_S = 60.0
T0 = datetime(2024, 1, 1, tzinfo=UTC)


def _event(i: int) -> NewEvent:
    return NewEvent(
        actor=f"user{i % 17}@example.com",
        action="model.push",
        subject=f"models:/model-{i % 101}/{i}",
        details={"version": i, "root_digest": f"sha256:{i:064x}", "files": 12},
        recorded_at=T0 + timedelta(microseconds=i),
    )


LEDGER_KEY = Ed25519PrivateKey.generate()
ORIGIN = "bench.modelward/ledger"


def _open(path: Path) -> Database:
    """A database whose appends are sealed and checkpointed as `open_registry` sets it up."""
    db = Database(f"sqlite:///{path}")
    schema.metadata.create_all(db.engine)
    db.connection_info[SEALER_INFO] = LedgerKeeper(LEDGER_KEY, ORIGIN)
    return db


def _report(label: str, value: float, unit: str, target: float, higher_is_better: bool) -> None:
    ratio = value / target if higher_is_better else target / value
    verdict = "meets" if ratio >= 1 else "MISSES"
    print(
        f"{label:<58} {value:>12,.2f} {unit:<9} target {target:,.0f} {unit}: x{ratio:.2f} {verdict}"
    )


def bench_appends(
    folder: Path, count: int = 2_000, batch: int = 1_000, batched: int = 50_000
) -> None:
    db = _open(folder / "appends.db")
    start = time.perf_counter()
    for i in range(count):
        with db.transaction() as conn:
            LedgerRepository(conn).append(
                "alice", "model.push", f"models:/m/{i}", {"version": i}, T0 + timedelta(seconds=i)
            )
    rate = count / (time.perf_counter() - start)
    _report(
        "appends/s, one transaction each (Database as is)", rate, "/s", TARGET_APPENDS_PER_S, True
    )

    # A long-running server keeps connections open; then closing a transaction's connection is not
    # the last close, which on SQLite WAL would checkpoint the log file every time.
    keeper = db.engine.connect()
    keeper.exec_driver_sql("SELECT 1").all()
    start = time.perf_counter()
    for i in range(count, 2 * count):
        with db.transaction() as conn:
            LedgerRepository(conn).append(
                "alice", "model.push", f"models:/m/{i}", {"version": i}, T0 + timedelta(seconds=i)
            )
    rate = count / (time.perf_counter() - start)
    _report(
        "appends/s, one transaction each (connection held open)",
        rate,
        "/s",
        TARGET_APPENDS_PER_S,
        True,
    )
    keeper.close()

    start = time.perf_counter()
    for offset in range(0, batched, batch):
        with db.transaction() as conn:
            LedgerRepository(conn).append_many(_event(2 * count + offset + i) for i in range(batch))
    rate = batched / (time.perf_counter() - start)
    _report(f"appends/s, batched ({batch} per transaction)", rate, "/s", TARGET_APPENDS_PER_S, True)
    with db.read() as conn:
        assert LedgerRepository(conn).size() == 2 * count + batched
    db.dispose()


def build_large(folder: Path, events: int) -> Database:
    db = _open(folder / "large.db")
    start = time.perf_counter()
    chunk = 50_000
    for offset in range(0, events, chunk):
        with db.transaction() as conn:
            LedgerRepository(conn).append_many(
                _event(i) for i in range(offset, min(events, offset + chunk))
            )
    elapsed = time.perf_counter() - start
    print(f"built a {events:,}-event ledger in {elapsed:.1f} s ({events / elapsed:,.0f} events/s)")
    return db


def bench_proofs(db: Database, audit: AuditService, events: int, samples: int = 500) -> None:
    rng = random.Random(9162)
    seqs = [rng.randrange(events) for _ in range(samples)]
    timings = []
    with db.read() as conn:
        repo = LedgerRepository(conn)
        size = repo.size()
        root = merkle.root_from_nodes(
            size, merkle.reader_from_mapping(repo.nodes(merkle.frontier_positions(size)))
        )
        for seq in seqs:
            start = time.perf_counter()
            groups = merkle.inclusion_proof_positions(seq, size)
            found = repo.nodes([pos for group in groups for pos in group])
            proof = merkle.inclusion_proof(seq, size, merkle.reader_from_mapping(found))
            timings.append((time.perf_counter() - start) * 1000)
            merkle.verify_inclusion(seq, size, repo.node(0, seq), proof, root)
    median = statistics.median(timings)
    p99 = statistics.quantiles(timings, n=100)[98]
    _report(f"inclusion proof at {size:,} events, median ms", median, "ms", TARGET_PROOF_MS, False)
    _report(
        f"inclusion proof at {size:,} events, p99 of {samples} ms",
        p99,
        "ms",
        TARGET_PROOF_MS,
        False,
    )

    full = []
    for seq in seqs[:100]:
        start = time.perf_counter()
        text = audit.proof(seq)
        full.append((time.perf_counter() - start) * 1000)
        verify_proof_file(text, audit.verifier)
    _report(
        "audit proof SEQ (fresh signed checkpoint + tlog-proof), median ms",
        statistics.median(full),
        "ms",
        TARGET_PROOF_MS,
        False,
    )


def bench_verify(audit: AuditService, older_checkpoint: str) -> None:
    start = time.perf_counter()
    report = audit.verify(since_checkpoint_text=older_checkpoint)
    elapsed = time.perf_counter() - start
    assert report.ok, report.problems
    _report(
        f"audit verify over {report.size:,} events (with --since), s",
        elapsed,
        "s",
        TARGET_VERIFY_S,
        False,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        bench_appends(folder)
        db = build_large(folder, args.events - 1)
        audit = AuditService(db, LEDGER_KEY, ORIGIN)
        older = audit.checkpoint()
        with db.transaction() as conn:
            LedgerRepository(conn).append_many([_event(args.events - 1)])
        assert open_checkpoint(audit.checkpoint(), audit.verifier).size == args.events
        bench_proofs(db, audit, args.events)
        bench_verify(audit, older)
        db.dispose()


if __name__ == "__main__":
    main()
