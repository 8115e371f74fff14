"""The example service: a real (tiny, randomly initialised) transformers model pushed, released,
loaded with `modelward.load` and served on CPU over HTTP on 127.0.0.1; its GenAI spans, ingested
as OTLP JSON lines, are attributed to the release; its degradation knobs show in the signals."""

from __future__ import annotations

import json
import threading
import urllib.request
from pathlib import Path

import pytest

from modelward.services.telemetry import TelemetryService

from .conftest import Registry


def _post(port: int, path: str, body: dict[str, object]) -> dict[str, object]:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        answer: dict[str, object] = json.loads(response.read())
    return answer


@pytest.mark.slow
def test_the_example_service_serves_a_verified_model_and_reports_its_release(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from examples.serve_model.__main__ import make_server
    from examples.serve_model.service import ModelService, ServiceConfig, make_tiny_model

    registry.service.push(make_tiny_model(tmp_path / "tiny"), "tiny")
    release = registry.gate.promote("models:/tiny/1", "staging").release
    assert release is not None
    spans = tmp_path / "spans.jsonl"
    service = ModelService(
        ServiceConfig(
            "models:/tiny@staging",
            environment="staging",
            cache_dir=str(tmp_path / "cache"),
            span_file=str(spans),
            arm="canary",
            batch_size=100,
        )
    )
    assert service.release_id == release.release_id
    server = make_server(service)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_port
        first = _post(port, "/generate", {"prompt": "what is the capital", "max_new_tokens": 6})
        assert first["output_tokens"] and first["refusal"] is False
        _post(port, "/admin/degrade", {"latency_s": 0.3, "refusal_rate": 1.0})
        second = _post(port, "/generate", {"prompt": "paris is", "max_new_tokens": 6})
        assert second["refusal"] is True and "sorry" in str(second["text"])
        _post(port, "/admin/flush", {})
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    result = TelemetryService(registry.context).ingest_files([spans])
    assert result.accepted == 2, result.to_dict()
    found = TelemetryService(registry.context).observations("tiny", "staging")
    assert {o.release_id for o in found} == {release.release_id}
    assert [o.refusal for o in found] == [False, True]
    assert all(o.arm == "canary" and o.output_tokens for o in found)
    assert found[1].duration_s is not None and found[1].duration_s >= 0.3
    assert found[1].ttft_s is not None and found[1].ttft_s >= 0.3
