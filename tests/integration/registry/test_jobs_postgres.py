"""The jobs queue's dedupe key on PostgreSQL: eight threads on two registry contexts (two
server processes) queue the same watched-canary slot, and exactly one job exists."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from modelward.services.context import open_registry
from modelward.services.jobs import JobService
from modelward.services.registry_init import initialize_registry


def test_concurrent_enqueues_with_one_key_queue_one_job(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    monkeypatch.setenv("MODELWARD_DATABASE_URL", pg_database)
    monkeypatch.delenv("MODELWARD_BLOB_URL", raising=False)
    initialize_registry(home)
    contexts = [open_registry(home) for _ in range(2)]
    try:
        queued: list[int] = []
        errors: list[BaseException] = []
        barrier = threading.Barrier(8)

        def enqueue(index: int) -> None:
            try:
                barrier.wait(timeout=30)
                job = JobService(contexts[index % 2]).enqueue_once(
                    "verify", {"uri": "models:/x/1"}, "alice", "canary.judge:1:1"
                )
                if job is not None:
                    queued.append(job.id)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=enqueue, args=(i,)) for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert len(queued) == 1
        with contexts[0].database.read() as conn:
            count = conn.exec_driver_sql("select count(*) from jobs").scalar()
        assert count == 1
    finally:
        for context in contexts:
            context.close()
