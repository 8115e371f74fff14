"""A canary started with a watch interval is judged by the servers themselves: every job
worker queues the acting `canary.judge` job of the current interval slot, once per (canary,
slot) however many workers try (a unique key in the jobs table), the job runs as the canary's
starter and rolls the environment back on a rollback verdict; an ended canary, one without a
watch interval and one whose row fails its ledger check are not scheduled."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelward.app import JobWorker
from modelward.errors import InputError
from modelward.services.canary import CanaryService, telemetry_source
from modelward.services.context import open_registry, utc_now
from modelward.services.gate import GateService
from modelward.services.jobs import JobService, schedule_canary_judgements
from modelward.services.registry import RegistryService
from modelward.storage.metadata.gate_repository import GateRepository

from .conftest import Served

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: tests\n"


@pytest.fixture
def world(served: Served, tmp_path: Path) -> Served:
    for version in (1, 2):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        weights = np.full((4, 4), version, dtype=np.float32)
        save_file({"w": weights}, str(folder / "model.safetensors"))
        RegistryService(served.registry.ctx, "root").push(folder, "llama")
    gate = GateService(served.registry.ctx, "root")
    gate.set_policy("staging", ALLOW)
    assert gate.promote("models:/llama/1", "staging").release is not None
    return served


def _canary(world: Served, clock: Callable[[], datetime] = utc_now) -> CanaryService:
    ctx = world.registry.ctx
    return CanaryService(ctx, "releaser", source=telemetry_source(ctx), clock=clock)


def _judge_jobs(world: Served) -> list[tuple[str, str, str]]:
    rows = world.sql("select dedupe_key, state, created_by from jobs where kind = 'canary.judge'")
    return sorted((str(k), str(s), str(b)) for k, s, b in rows)


def test_a_dedupe_key_queues_a_job_once(world: Served) -> None:
    first = JobService(world.registry.ctx).enqueue_once("verify", {"uri": "x"}, "root", "k-1")
    other = open_registry(world.home)
    try:
        again = JobService(other).enqueue_once("verify", {"uri": "y"}, "root", "k-1")
    finally:
        other.close()
    assert first is not None and first.dedupe_key == "k-1" and again is None
    assert JobService(world.registry.ctx).enqueue_once("verify", {}, "root", "k-2") is not None
    with pytest.raises(InputError, match="unknown job kind"):
        JobService(world.registry.ctx).enqueue_once("nope", {}, "root", "k-3")


def test_only_watched_running_trusted_canaries_are_due(
    world: Served, caplog: pytest.LogCaptureFixture
) -> None:
    start = utc_now()
    now = [start]
    canary = _canary(world, clock=lambda: now[0])
    canary.start("llama", "staging", "models:/llama/2")  # not watched
    assert canary.watch_slots() == []
    canary.start("llama", "staging", "models:/llama/2", watch_s=60)
    assert canary.watch_slots() == []  # the first interval has not passed
    now[0] = start + timedelta(seconds=150)
    (due,) = canary.watch_slots()
    assert (due.slot, due.started_by, due.key) == (2, "releaser", f"canary.judge:{due.canary_id}:2")
    queued = schedule_canary_judgements(world.registry.ctx)  # the real clock: not due yet
    assert queued == []
    with pytest.raises(InputError, match="watch interval"):
        canary.start("llama", "staging", "models:/llama/2", watch_s=0.5)
    canary.judge("llama", "staging")
    assert len(canary.watch_slots()) == 1  # an inconclusive verdict does not end the watching
    # a final verdict would; one written behind modelward's back is not trusted either way
    world.sql("update canary_verdicts set verdict = 'promote'")
    with caplog.at_level(logging.ERROR, logger="modelward.canary"):
        assert canary.watch_slots() == []
    assert "is not watched" in caplog.text and "not trusted" in caplog.text
    world.sql("update canary_verdicts set verdict = 'inconclusive'")
    assert len(canary.watch_slots()) == 1
    world.sql("update canaries set plan = replace(plan, '60', '1')")  # edited behind our back
    assert canary.watch_slots() == []


def _send_feedback(world: Served, version: int, scores: list[int]) -> None:
    from tests.unit.server.test_remote_runtime import _feedback

    _feedback(world, version, scores)


def _wait(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_two_server_workers_judge_each_slot_once_and_roll_back(
    world: Served, caplog: pytest.LogCaptureFixture
) -> None:
    gate = GateService(world.registry.ctx, "root")
    assert gate.promote("models:/llama/2", "staging").release is not None  # the candidate
    started = _canary(world).start(
        "llama",
        "staging",
        "models:/llama/2",
        metrics=["feedback:0.2:0.3"],
        min_samples=50,
        watch_s=1,
    )
    contexts = [open_registry(world.home) for _ in range(2)]  # two server processes
    workers = [
        JobWorker(JobService(c, lease=timedelta(seconds=60)), 0.01, schedule_seconds=0.01)
        for c in contexts
    ]
    caplog.set_level(logging.WARNING, logger="modelward.alerts")
    try:
        for worker in workers:
            worker.start()
        key = f"canary.judge:{started['canary_id']}"
        _wait(lambda: (f"{key}:2", "done", "releaser") in _judge_jobs(world))
        first_two = _judge_jobs(world)[:2]
        assert first_two == [(f"{key}:1", "done", "releaser"), (f"{key}:2", "done", "releaser")]
        with world.registry.ctx.database.read() as conn:
            current = GateRepository(conn).current_release("llama", "staging")
        assert current is not None and current.release.version == 2  # still on the candidate
        _send_feedback(world, 1, [5, 4, 5, 4, 5])
        _send_feedback(world, 2, [1, 2, 1, 3, 2])

        def rolled_back() -> bool:
            with world.registry.ctx.database.read() as conn:
                row = GateRepository(conn).current_release("llama", "staging")
            return row is not None and row.release.version == 1

        _wait(rolled_back)
        time.sleep(2.2)  # two more intervals: an ended canary is not judged again
    finally:
        for worker in workers:
            worker.stop()
        for context in contexts:
            context.close()
    jobs = _judge_jobs(world)
    slots = [int(k.rsplit(":", 1)[1]) for k, _, _ in jobs]
    assert slots == list(range(1, len(slots) + 1))  # each slot once, none skipped
    assert all(state == "done" for _, state, _ in jobs)
    verdicts = world.sql("select verdict, acted from canary_verdicts order by id")
    assert verdicts[-1][0] == "rollback" and str(verdicts[-1][1]).startswith("rolled back to")
    assert sum(1 for _, acted in verdicts if acted) == 1
    assert len(jobs) == len(verdicts)
    assert any("canary.rollback" in r.getMessage() for r in caplog.records)
    events = [e[0] for e in world.sql("select action from ledger_events order by seq")]
    assert "release.rollback" in events and events[-1] == "canary.verdict"
