"""The ledger on a real PostgreSQL (127.0.0.1:5432): the SQLite scenarios, and concurrent appends
from several threads that must neither lose nor duplicate a sequence number.

Each test creates its own database `mw_<random>` and drops it afterwards.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy import create_engine, text
from tests.unit.storage.test_ledger import (
    scenario_append_and_prove,
    scenario_consistency_and_forks,
    scenario_consistent_rewrite_is_reported,
    scenario_deletions_are_reported,
    scenario_state_checks_and_inputs,
    scenario_tampering_is_reported,
    sealed,
    service,
)

from modelward.storage.metadata import schema
from modelward.storage.metadata.database import Database
from modelward.storage.metadata.ledger_repository import LedgerRepository

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def make_db() -> Iterator[Callable[[], Database]]:
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    created: list[tuple[str, Database]] = []

    def make() -> Database:
        name = f"mw_{secrets.token_hex(6)}"
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        db = Database(f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}")
        created.append((name, db))
        schema.metadata.create_all(db.engine)
        return sealed(db)

    yield make
    for name, db in created:
        db.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def test_append_and_prove(make_db: Callable[[], Database]) -> None:
    scenario_append_and_prove(make_db())


def test_tampering_is_reported(make_db: Callable[[], Database]) -> None:
    scenario_tampering_is_reported(make_db())


def test_consistent_rewrite_is_reported(make_db: Callable[[], Database]) -> None:
    scenario_consistent_rewrite_is_reported(make_db())


def test_deletions_are_reported(make_db: Callable[[], Database]) -> None:
    scenario_deletions_are_reported(make_db())


def test_consistency_and_forks(make_db: Callable[[], Database]) -> None:
    scenario_consistency_and_forks(make_db(), make_db())


def test_state_checks_and_inputs(make_db: Callable[[], Database]) -> None:
    scenario_state_checks_and_inputs(make_db())


def test_concurrent_appends_lose_and_duplicate_nothing(make_db: Callable[[], Database]) -> None:
    db = make_db()
    threads_count, per_thread = 4, 40
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads_count)

    def worker(number: int) -> None:
        try:
            barrier.wait()
            for i in range(per_thread):
                with db.transaction() as conn:
                    LedgerRepository(conn).append(
                        f"actor-{number}",
                        "model.push",
                        f"models:/t{number}/{i}",
                        {"thread": number, "i": i},
                        datetime.now(UTC),
                    )
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = service(db).log()
    assert [event.seq for event in events] == list(range(threads_count * per_thread))
    subjects = {event.subject for event in events}
    assert len(subjects) == threads_count * per_thread
    report = service(db).verify()
    assert report.ok, report.problems
    assert report.size == threads_count * per_thread
