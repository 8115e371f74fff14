"""Concurrent writers on one PostgreSQL database (127.0.0.1:5432): only the ledger append is
serialised. Writes that append nothing (jobs) go on while another session holds the ledger
lock, appends wait for it; racing pushes, first pushes of new models included, get gap-free
version numbers and a ledger that verifies.

Each test creates its own database `mw_<random>` and drops it afterwards.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from tests.unit.registry.bundles import make_bundle

from modelward.services.audit import AuditService
from modelward.services.context import RegistryContext, open_registry
from modelward.services.jobs import JobService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.storage.metadata.database import LEDGER_LOCK_KEY

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@pytest.fixture
def registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RegistryContext]:
    name = f"mw_{secrets.token_hex(6)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    monkeypatch.setenv("MODELWARD_DATABASE_URL", f"postgresql+psycopg://postgres@127.0.0.1/{name}")
    monkeypatch.setenv("MODELWARD_ACTOR", "root")
    monkeypatch.delenv("MODELWARD_BLOB_URL", raising=False)
    try:
        initialize_registry(tmp_path / "home")
        context = open_registry(tmp_path / "home")
        try:
            yield context
        finally:
            context.close()
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def _in_thread(call: object) -> tuple[threading.Thread, list[object]]:
    outcome: list[object] = []

    def target() -> None:
        try:
            outcome.append(call())  # type: ignore[operator]
        except BaseException as exc:  # reported by the test
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread, outcome


def test_writes_that_append_nothing_do_not_wait_for_the_ledger_lock(
    registry: RegistryContext, tmp_path: Path
) -> None:
    jobs = JobService(registry)
    holder = registry.database.engine.connect()
    try:
        holder.execute(text("SELECT pg_advisory_lock(:k)"), {"k": LEDGER_LOCK_KEY})
        # a job is enqueued and claimed while the ledger is locked elsewhere
        thread, outcome = _in_thread(lambda: jobs.claim("w1") or jobs.enqueue("verify", {}, "root"))
        thread.join(timeout=20)
        assert not thread.is_alive(), "a write that appends nothing waited for the ledger lock"
        assert not isinstance(outcome[0], BaseException), outcome
        claimed, _ = _in_thread(lambda: jobs.claim("w1"))
        claimed.join(timeout=20)
        assert not claimed.is_alive()
        # an append waits for the lock...
        pusher = RegistryService(registry, actor="root")
        bundle = make_bundle(tmp_path / "held", seed=1)
        push, pushed = _in_thread(lambda: pusher.push(bundle, "held-llm"))
        push.join(timeout=1.5)
        assert push.is_alive(), "a push appended to the ledger while another session held its lock"
        assert pushed == []
    finally:
        holder.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": LEDGER_LOCK_KEY})
        holder.close()
    # ...and completes once it is free
    push.join(timeout=60)
    assert not push.is_alive()
    assert not isinstance(pushed[0], BaseException), pushed
    assert pushed[0].version.number == 1  # type: ignore[attr-defined]


def test_racing_pushes_get_gap_free_numbers_and_the_ledger_verifies(
    registry: RegistryContext, tmp_path: Path
) -> None:
    threads_count, per_thread = 6, 3
    bundles = {
        (t, i): make_bundle(tmp_path / f"b-{t}-{i}", seed=1000 + t * 10 + i)
        for t in range(threads_count)
        for i in range(per_thread)
    }
    barrier = threading.Barrier(threads_count)
    results: dict[str, list[int]] = {"race-a": [], "race-b": []}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def worker(t: int) -> None:
        service = RegistryService(registry, actor="root")
        model = ("race-a", "race-b")[t % 2]
        try:
            barrier.wait(timeout=30)  # the first pushes of both models race
            for i in range(per_thread):
                result = service.push(bundles[(t, i)], model)
                assert result.created
                with lock:
                    results[model].append(result.version.number)
        except BaseException as exc:  # asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(threads_count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=240)
    assert not any(thread.is_alive() for thread in threads)
    assert errors == []
    service = RegistryService(registry, actor="root")
    for model, numbers in results.items():
        expected = list(range(1, threads_count // 2 * per_thread + 1))
        assert sorted(numbers) == expected  # none lost, none duplicated
        assert [v["version"] for v in service.list_versions(model)] == expected
    # the same bundle pushed twice concurrently is one version
    again = [bundles[(0, 0)], bundles[(0, 0)]]
    twice = [_in_thread(lambda b=b: service.push(b, "race-a")) for b in again]
    for thread, _ in twice:
        thread.join(timeout=60)
    numbers = {o[0].version.number for _, o in twice}  # type: ignore[attr-defined]
    assert len(numbers) == 1
    audit = AuditService(registry.database, registry.ledger_key, registry.origin)
    report = audit.verify()
    assert report.ok, report.problems
    events = audit.log()
    assert [e.seq for e in events] == list(range(len(events)))
