"""Jobs claimed from the database with leases: done once, reclaimed when a worker dies, given up
after the last attempt; and the jobs endpoints."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tests.unit.registry.bundles import make_bundle
from tests.unit.server.conftest import Served

from modelward.client import Client
from modelward.errors import ConflictError
from modelward.services.context import RegistryContext
from modelward.services.jobs import JobService


def _pushed(served: Served, tmp_path: Path) -> None:
    Client(
        "http://testserver",
        served.tokens["trainer"],
        http=served.http,
        known_registries=tmp_path / "k.json",
    ).push(make_bundle(tmp_path / "b"), "llama")


def test_a_verify_job_runs_once(served: Served, tmp_path: Path) -> None:
    _pushed(served, tmp_path)
    service = JobService(served.registry.ctx)
    job = service.enqueue("verify", {"uri": "models:/llama/1"}, "auditor")
    done = service.run_one("worker-a")
    assert done is not None and done.id == job.id and done.state == "done"
    assert done.result is not None and done.result["ok"] is True and done.attempts == 1
    assert service.run_one("worker-b") is None


def test_a_job_whose_worker_died_is_claimed_again(served: Served) -> None:
    calls: list[str] = []

    def handler(_: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        calls.append(payload["n"])
        return {"n": payload["n"]}

    dying = JobService(served.registry.ctx, {"t": handler}, lease=timedelta(seconds=-1))
    job = dying.enqueue("t", {"n": "1"}, "root")
    claimed = dying.claim("worker-that-dies")  # and never finishes
    assert claimed is not None and claimed.state == "running"
    survivor = JobService(served.registry.ctx, {"t": handler})
    done = survivor.run_one("worker-b")
    assert done is not None and done.id == job.id and done.state == "done"
    assert done.attempts == 2 and done.claimed_by == "worker-b" and calls == ["1"]
    # the dead worker coming back cannot overwrite the outcome
    from modelward.storage.metadata.jobs_repository import JobsRepository

    with pytest.raises(ConflictError), served.registry.ctx.database.transaction() as conn:
        JobsRepository(conn).finish(job.id, "worker-that-dies", "failed", {}, "now")


def test_a_job_is_given_up_after_its_last_attempt(served: Served) -> None:
    def handler(_: RegistryContext, payload: dict[str, Any], actor: str) -> dict[str, Any]:
        raise AssertionError("never reached")

    service = JobService(
        served.registry.ctx, {"t": handler}, lease=timedelta(seconds=-1), max_attempts=2
    )
    job = service.enqueue("t", {}, "root")
    assert service.claim("w1") is not None
    assert service.claim("w2") is not None
    assert service.claim("w3") is None
    assert service.get(job.id).state == "failed"


def test_jobs_over_http(served: Served, tmp_path: Path) -> None:
    _pushed(served, tmp_path)
    headers = served.headers("auditor")
    created = served.http.post(
        "/api/v1/jobs", headers=headers, json={"kind": "verify", "uri": "models:/llama/1"}
    )
    assert created.status_code == 202, created.text
    job_id = created.json()["id"]
    JobService(served.registry.ctx).run_one("w")
    read = served.http.get(f"/api/v1/jobs/{job_id}", headers=headers).json()
    assert read["state"] == "done" and read["result"]["ok"] is True
    assert served.http.get(f"/api/v1/jobs/{job_id}").status_code == 401
    unknown = served.http.post(
        "/api/v1/jobs", headers=headers, json={"kind": "rm-rf", "uri": "models:/llama/1"}
    )
    assert unknown.status_code == 400


def test_the_server_worker_thread_runs_jobs(served: Served, tmp_path: Path) -> None:
    _pushed(served, tmp_path)
    job = JobService(served.registry.ctx).enqueue("verify", {"uri": "models:/llama/1"}, "auditor")
    worker = served.registry.start_job_worker(idle_seconds=0.05)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if JobService(served.registry.ctx).get(job.id).state == "done":
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    assert JobService(served.registry.ctx).get(job.id).state == "done"
