"""Telemetry on PostgreSQL: the migrations create the tables, and concurrent ingests of
overlapping span sets store each (trace_id, span_id) once without an integrity error; metric
points likewise once per (series, start, time)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tests.unit.runtime.conftest import ALLOW, request, span

from modelward.services.context import open_registry
from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.telemetry import TelemetryService, observations


def test_concurrent_overlapping_ingests_store_each_span_once(
    pg_database: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    monkeypatch.setenv("MODELWARD_DATABASE_URL", pg_database)
    monkeypatch.delenv("MODELWARD_BLOB_URL", raising=False)
    initialize_registry(home)
    context = open_registry(home)
    try:
        folder = tmp_path / "bundle"
        folder.mkdir()
        save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
        RegistryService(context).push(folder, "chat")
        gate = GateService(context)
        gate.set_policy("staging", ALLOW)
        release = gate.promote("models:/chat/1", "staging").release
        assert release is not None
        now = time.time_ns()
        spans = [span(now - i, gen_ai__usage__output_tokens=i) for i in range(200)]
        bodies = [
            request(spans[:150], modelward__release=release.release_id),
            request(spans[50:], modelward__release=release.release_id),
        ]
        errors: list[BaseException] = []
        accepted: list[int] = []

        def ingest(body: bytes) -> None:
            try:
                accepted.append(TelemetryService(context).ingest_otlp(body).accepted)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=ingest, args=(b,)) for b in bodies]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert sum(accepted) == 200
        stored = observations(context, "chat", release_id=release.release_id)
        assert len(stored) == 200 and len({o.span_id for o in stored}) == 200

        from tests.unit.server.test_server_otlp_metrics import sdk_request

        from modelward.services.telemetry import metric_points

        metrics = sdk_request(release.release_id, [4, 5], [0.2]).SerializeToString()
        accepted.clear()

        def ingest_metrics() -> None:
            try:
                result = TelemetryService(context).ingest_otlp_metrics(
                    metrics, "application/x-protobuf"
                )
                accepted.append(result.accepted)
            except BaseException as exc:  # collected and asserted below
                errors.append(exc)

        threads = [threading.Thread(target=ingest_metrics) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert not errors, errors
        assert sum(accepted) == 6 and len(metric_points(context, "chat")) == 6
    finally:
        context.close()
