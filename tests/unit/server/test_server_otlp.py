"""OTLP/HTTP on the server's standard paths: a token allowed `telemetry.write` sends spans (JSON
or protobuf from the OTel SDK's own encoder); other callers are refused; hostile bodies get a
400 naming what was wrong and never a 500. Metrics: test_server_otlp_metrics."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.telemetry import observations

from .conftest import Served

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: tests\n"


def _release(served: Served, tmp_path: Path) -> str:
    folder = tmp_path / "bundle"
    folder.mkdir()
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    RegistryService(served.registry.ctx, "root").push(folder, "chat")
    gate = GateService(served.registry.ctx, "root")
    gate.set_policy("staging", ALLOW)
    result = gate.promote("models:/chat/1", "staging")
    assert result.release is not None
    return result.release.release_id


def _json_body(release: str, *, tokens: object = "12", span_id: str = "00f067aa0ba902b7") -> bytes:
    now = time.time_ns()
    return json.dumps(
        {
            "resourceSpans": [
                {
                    "resource": {
                        "attributes": [
                            {"key": "modelward.release", "value": {"stringValue": release}}
                        ]
                    },
                    "scopeSpans": [
                        {
                            "spans": [
                                {
                                    "traceId": "4bf92f3577b34da6a3ce929d0e0e4736",
                                    "spanId": span_id,
                                    "name": "chat",
                                    "startTimeUnixNano": str(now - 10**8),
                                    "endTimeUnixNano": str(now),
                                    "attributes": [
                                        {
                                            "key": "gen_ai.usage.output_tokens",
                                            "value": {"intValue": tokens},
                                        }
                                    ],
                                }
                            ]
                        }
                    ],
                }
            ]
        }
    ).encode()


def test_a_telemetry_token_sends_json_and_protobuf_spans(served: Served, tmp_path: Path) -> None:
    release = _release(served, tmp_path)
    token = served.token_for("releaser", scopes=["telemetry.write"])
    headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
    sent = served.http.post("/v1/traces", content=_json_body(release), headers=headers)
    assert sent.status_code == 200, sent.text
    assert sent.json()["modelward"]["accepted"] == 1
    again = served.http.post(
        "/v1/traces",
        content=gzip.compress(_json_body(release)),
        headers={**headers, "content-encoding": "gzip"},
    )
    assert again.status_code == 200 and again.json()["modelward"]["duplicates"] == 1

    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceResponse,
    )
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"modelward.release": release}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("t").start_as_current_span("chat") as span:
        span.set_attribute("gen_ai.usage.output_tokens", 3)
    with provider.get_tracer("t").start_as_current_span("orphan") as span:
        span.set_attribute("gen_ai.usage.output_tokens", 3)
        span.set_attribute("modelward.release", "rel-404")
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    answer = served.http.post(
        "/v1/traces",
        content=body,
        headers={**headers, "content-type": "application/x-protobuf"},
    )
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/x-protobuf"
    decoded = ExportTraceServiceResponse.FromString(answer.content)
    assert decoded.partial_success.rejected_spans == 1
    assert "does not exist" in decoded.partial_success.error_message
    assert sorted(o.output_tokens for o in observations(served.registry.ctx, "chat")) == [3, 12]


def test_only_telemetry_writers_are_let_in(served: Served, tmp_path: Path) -> None:
    release = _release(served, tmp_path)
    body = _json_body(release)
    kind = {"content-type": "application/json"}
    assert served.http.post("/v1/traces", content=body, headers=kind).status_code == 401
    for who in ("viewer", "trainer", "auditor"):
        refused = served.http.post(
            "/v1/traces", content=body, headers={**kind, **served.headers(who)}
        )
        assert refused.status_code == 403, (who, refused.text)
    push_only = served.token_for("releaser", scopes=["push"])
    refused = served.http.post(
        "/v1/traces", content=body, headers={**kind, "authorization": f"Bearer {push_only}"}
    )
    assert refused.status_code == 403
    assert observations(served.registry.ctx, "chat") == []


def test_hostile_bodies_get_a_400_with_the_reason(served: Served, tmp_path: Path) -> None:
    release = _release(served, tmp_path)
    headers = {**served.headers("releaser"), "content-type": "application/json"}
    cases = {
        b"{not json": "not JSON",
        b"[1, 2]": "JSON object",
        _json_body(release, tokens="NaN"): "integer",
        _json_body(release, tokens=True): "boolean",
        _json_body(release, span_id="xyz"): "spanId",
        _json_body(release, tokens="-5"): "output tokens",
        gzip.compress(b"{" * 10_000): "",
    }
    for body, fragment in cases.items():
        encoding = {"content-encoding": "gzip"} if body.startswith(b"\x1f\x8b") else {}
        answer = served.http.post("/v1/traces", content=body, headers={**headers, **encoding})
        assert answer.status_code == 400, (body[:40], answer.text)
        assert fragment in answer.json()["error"]["message"], answer.text
    odd = served.http.post(
        "/v1/traces", content=b"x", headers={**headers, "content-type": "text/plain"}
    )
    assert odd.status_code == 400 and "content type" in odd.json()["error"]["message"]
    huge = served.http.post("/v1/traces", content=b"x" * (64 * 1024 * 1024 + 1), headers=headers)
    assert huge.status_code == 413
    assert observations(served.registry.ctx, "chat") == []


def test_load_through_the_server_verifies_signature_bytes_and_release(
    served: Served, tmp_path: Path
) -> None:
    from modelward.client import Client
    from modelward.errors import VerificationError
    from modelward.runtime.loading import load_bundle

    _release(served, tmp_path)  # models:/chat/1 released to staging
    client = Client(
        "http://testserver",
        served.tokens["viewer"],
        http=served.http,
        known_registries=tmp_path / "known.json",
    )
    cache = tmp_path / "cache"
    loaded = load_bundle("models:/chat@staging", cache_dir=cache, client=client)
    assert loaded.release_id is not None and not loaded.cached
    assert (loaded.path / "model.safetensors").is_file()
    assert load_bundle("models:/chat/1", cache_dir=cache, client=client, strict=True).cached
    with pytest.raises(VerificationError, match="not the current release"):
        folder = tmp_path / "v2"
        folder.mkdir()
        save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
        RegistryService(served.registry.ctx, "root").push(folder, "chat")
        load_bundle("models:/chat/2", cache_dir=cache, client=client, environment="staging")
