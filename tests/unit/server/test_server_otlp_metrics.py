"""OTLP/HTTP metrics on `/v1/metrics`: GenAI histograms and feedback scores from the OTel SDK's
own encoder (protobuf, and its JSON mapping) are stored per release and summarised; a retried
export is stored once; other metrics are skipped; callers without `telemetry.write` or with a
token limited to another model are refused; hostile bodies are a 400 that stores nothing."""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from google.protobuf.json_format import MessageToDict
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from safetensors.numpy import save_file

from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.telemetry import TelemetryService, metric_points

from .conftest import Served

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: tests\n"
SECONDS = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0]


def _release(served: Served, tmp_path: Path, model: str = "chat") -> str:
    folder = tmp_path / f"bundle-{model}"
    folder.mkdir()
    save_file({"w": np.ones((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    RegistryService(served.registry.ctx, "root").push(folder, model)
    gate = GateService(served.registry.ctx, "root")
    gate.set_policy("staging", ALLOW)
    result = gate.promote(f"models:/{model}/1", "staging")
    assert result.release is not None
    return result.release.release_id


def sdk_request(release: str, feedback: list[float], durations: list[float]) -> Any:
    """An ExportMetricsServiceRequest as an instrumented service's OTel SDK sends it."""
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"modelward.release": release}), metric_readers=[reader]
    )
    meter = provider.get_meter("genai-service")
    duration = meter.create_histogram(
        "gen_ai.client.operation.duration", unit="s", explicit_bucket_boundaries_advisory=SECONDS
    )
    tokens = meter.create_histogram("gen_ai.client.token.usage", unit="{token}")
    ttft = meter.create_histogram(
        "gen_ai.server.time_to_first_token", unit="s", explicit_bucket_boundaries_advisory=SECONDS
    )
    score = meter.create_histogram(
        "modelward.feedback.score", explicit_bucket_boundaries_advisory=[0, 1, 2, 3, 4, 5]
    )
    other = meter.create_counter("http.server.request.count")
    chat = {"gen_ai.operation.name": "chat"}
    for value in durations:
        duration.record(value, chat)
        ttft.record(value / 4, chat)
        tokens.record(10, {**chat, "gen_ai.token.type": "input"})
        tokens.record(40, {**chat, "gen_ai.token.type": "output"})
    duration.record(9.0, {**chat, "error.type": "timeout"})
    for value in feedback:
        score.record(value)
    other.add(3)
    request = encode_metrics(reader.get_metrics_data())
    provider.shutdown()
    return request


def _post(served: Served, body: bytes, who: str = "releaser", kind: str = "json") -> Any:
    content_type = "application/x-protobuf" if kind == "protobuf" else "application/json"
    headers = {**served.headers(who), "content-type": content_type}
    return served.http.post("/v1/metrics", content=body, headers=headers)


def test_sdk_metrics_are_stored_per_release_and_summarised(served: Served, tmp_path: Path) -> None:
    release = _release(served, tmp_path)
    request = sdk_request(release, [4, 5, 3, 0], [0.2, 0.4, 0.3])
    answer = _post(served, request.SerializeToString(), kind="protobuf")
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "application/x-protobuf"
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceResponse,
    )

    decoded = ExportMetricsServiceResponse.FromString(answer.content)
    assert decoded.partial_success.rejected_data_points == 0  # the counter is skipped, not bad
    stored = metric_points(served.registry.ctx, "chat")
    assert {p.signal for p in stored} == {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage.input",
        "gen_ai.client.token.usage.output",
        "gen_ai.server.time_to_first_token",
        "modelward.feedback.score",
    }
    assert all(p.release_id == release and p.version == 1 for p in stored)
    # the JSON encoding of the same export is a retry: stored once
    again = _post(served, json.dumps(MessageToDict(request)).encode())
    assert again.status_code == 200, again.text
    counts = again.json()["modelward"]
    assert counts["accepted"] == 0 and counts["duplicates"] == 6 and counts["skipped"] == 1
    assert "partialSuccess" not in again.json()
    (window,) = TelemetryService(served.registry.ctx, "viewer").summary(
        "chat", "staging", window_s=3600
    )
    assert window.requests == 0 and window.error_rate is None  # no spans were sent
    feedback = window.metrics["modelward.feedback.score"]
    assert feedback.count == 4 and feedback.mean == pytest.approx(3.0)
    assert feedback.min == 0 and feedback.max == 5
    latency = window.metrics["gen_ai.client.operation.duration"]
    assert latency.count == 4 and latency.errors == 1 and latency.p50 == 0.5
    assert window.metrics["gen_ai.client.token.usage.output"].mean == 40
    assert window.to_dict()["metrics"]["gen_ai.server.time_to_first_token"]["count"] == 3


def test_cumulative_exports_are_differenced_and_a_retry_is_stored_once(
    served: Served, tmp_path: Path
) -> None:
    release = _release(served, tmp_path)
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create({"modelward.release": release}), metric_readers=[reader]
    )
    score = provider.get_meter("svc").create_histogram("modelward.feedback.score")
    score.record(1.0)
    first = encode_metrics(reader.get_metrics_data()).SerializeToString()
    score.record(5.0)
    score.record(3.0)
    second = encode_metrics(reader.get_metrics_data()).SerializeToString()
    provider.shutdown()
    for body in (first, second, second):
        assert _post(served, body, kind="protobuf").status_code == 200
    stored = metric_points(served.registry.ctx, "chat")
    assert [p.count for p in stored] == [1, 3] and stored[0].temporality == "cumulative"
    from modelward.runtime.metric_signals import deltas

    assert [(p.count, p.sum) for p in deltas(stored)] == [(1, 1.0), (2, 8.0)]


def test_only_telemetry_writers_for_the_model_may_send_metrics(
    served: Served, tmp_path: Path
) -> None:
    release = _release(served, tmp_path)
    body = sdk_request(release, [4], [0.2]).SerializeToString()
    for who in ("viewer", "trainer", "auditor", "nobody"):
        refused = _post(served, body, who=who, kind="protobuf")
        assert refused.status_code in (401, 403), (who, refused.text)
    other = served.token_for("releaser", scopes=["telemetry.write"], model_pattern="other-*")
    refused = served.http.post(
        "/v1/metrics",
        content=body,
        headers={"authorization": f"Bearer {other}", "content-type": "application/x-protobuf"},
    )
    assert refused.status_code == 403 and "limited to models" in refused.text
    assert metric_points(served.registry.ctx, "chat") == []


def _json_request(release: str, **point: Any) -> dict[str, Any]:
    now = time.time_ns()
    base: dict[str, Any] = {
        "startTimeUnixNano": str(now - 10**9),
        "timeUnixNano": str(now),
        "count": "2",
        "sum": 0.5,
        "bucketCounts": ["1", "1", "0"],
        "explicitBounds": [0.2, 1.0],
        "attributes": [{"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}}],
    }
    base.update(point)
    return {
        "resourceMetrics": [
            {
                "resource": {
                    "attributes": [{"key": "modelward.release", "value": {"stringValue": release}}]
                },
                "scopeMetrics": [
                    {
                        "metrics": [
                            {
                                "name": "gen_ai.client.operation.duration",
                                "histogram": {
                                    "aggregationTemporality": 1,
                                    "dataPoints": [
                                        {**base, "timeUnixNano": str(now - 1)},  # a good point
                                        base,
                                    ],
                                },
                            }
                        ]
                    }
                ],
            }
        ]
    }


def test_hostile_metric_bodies_get_a_400_and_store_nothing(served: Served, tmp_path: Path) -> None:
    release = _release(served, tmp_path)
    good = _json_request(release)
    assert _post(served, json.dumps(good).encode()).json()["modelward"]["accepted"] == 2
    served.sql("delete from telemetry_metric_points")
    cases: dict[str, tuple[dict[str, Any], str]] = {
        "count is text": (_json_request(release, count="many"), "count"),
        "count is a boolean": (_json_request(release, count=True), "boolean"),
        "huge count": (
            _json_request(release, count=str(10**13), bucketCounts=[str(10**13), "0", "0"]),
            "beyond",
        ),
        "NaN sum": (_json_request(release, sum="NaN"), "finite"),
        "infinite sum": (_json_request(release, sum="Infinity"), "finite"),
        "negative duration": (_json_request(release, sum=-0.5), "negative"),
        "overflowing sum": (_json_request(release, sum=1e308), "beyond ±86400"),
        "overflowing max": (_json_request(release, max=1e300), "beyond ±86400"),
        "overflowing bound": (_json_request(release, explicitBounds=[0.5, 1e300]), "beyond"),
        "buckets do not add up": (_json_request(release, bucketCounts=["5", "1", "0"]), "add up"),
        "one bucket too few": (_json_request(release, bucketCounts=["2", "0"]), "one more bucket"),
        "unordered bounds": (_json_request(release, explicitBounds=[1.0, 0.2]), "increasing"),
        "no time": (_json_request(release, timeUnixNano="0"), "time"),
        "no sum": (_json_request(release, sum=None), "sum"),
        "mean outside min and max": (_json_request(release, min=2.0, max=3.0), "outside"),
        "attributes not a list": (_json_request(release, attributes={"a": 1}), "list"),
    }
    no_temporality = copy.deepcopy(good)
    del no_temporality["resourceMetrics"][0]["scopeMetrics"][0]["metrics"][0]["histogram"][
        "aggregationTemporality"
    ]
    cases["no temporality"] = (no_temporality, "aggregationTemporality")
    for label, (document, fragment) in cases.items():
        answer = _post(served, json.dumps(document).encode())
        assert answer.status_code == 400, (label, answer.text)
        assert fragment in answer.json()["error"]["message"], (label, answer.text)
    for body, kind, fragment in (
        (b"", "json", "empty"),
        (b"", "protobuf", "empty"),
        (b"{", "json", "not JSON"),
        (b'{"resourceMetrics": 3}', "json", "list"),
        (b'{"resourceMetrics": [{"scopeMetrics": [{"metrics": [NaN]}]}]}', "json", "NaN"),
    ):
        answer = _post(served, body, kind=kind)
        assert answer.status_code == 400 and fragment in answer.text, (body, answer.text)
    whole = sdk_request(release, [4, 5], [0.2]).SerializeToString()
    truncated = _post(served, whole[: len(whole) // 2], kind="protobuf")
    assert truncated.status_code == 400, truncated.text
    assert "ExportMetricsServiceRequest" in truncated.json()["error"]["message"]
    assert metric_points(served.registry.ctx, "chat") == []


def test_a_protobuf_point_with_nan_or_a_huge_count_is_refused(
    served: Served, tmp_path: Path
) -> None:
    release = _release(served, tmp_path)
    for spoil in ("nan", "count", "negative"):
        request = sdk_request(release, [4], [0.2])
        metrics = request.resource_metrics[0].scope_metrics[0].metrics
        point = next(m for m in metrics if m.name == "modelward.feedback.score")
        duration = next(m for m in metrics if m.name == "gen_ai.client.operation.duration")
        if spoil == "nan":
            point.histogram.data_points[0].sum = float("nan")
        elif spoil == "count":
            point.histogram.data_points[0].count = 2**63
        else:
            duration.histogram.data_points[0].sum = -1.0
        answer = _post(served, request.SerializeToString(), kind="protobuf")
        assert answer.status_code == 400, (spoil, answer.text)
    assert metric_points(served.registry.ctx, "chat") == []


def test_a_canary_is_judged_from_stored_feedback_metrics(served: Served, tmp_path: Path) -> None:
    """Feedback histograms sent to /v1/metrics by the baseline and the candidate (named by
    modelward.version and the environment) roll the canary back without any span."""
    from modelward.services.canary import CanaryService, telemetry_source

    release = _release(served, tmp_path)
    folder = tmp_path / "v2"
    folder.mkdir()
    save_file({"w": np.zeros((4, 4), dtype=np.float32)}, str(folder / "model.safetensors"))
    RegistryService(served.registry.ctx, "root").push(folder, "chat")
    canary = CanaryService(
        served.registry.ctx, "releaser", source=telemetry_source(served.registry.ctx)
    )
    canary.start("chat", "staging", "models:/chat/2", metrics=["feedback:0.2:0.3"], min_samples=50)
    for version, scores in ((1, [5, 4, 5, 4, 5]), (2, [1, 2, 1, 3, 2])):
        reader = InMemoryMetricReader()
        provider = MeterProvider(
            resource=Resource.create(
                {
                    "modelward.model": "chat",
                    "modelward.version": version,
                    "deployment.environment.name": "staging",
                }
            ),
            metric_readers=[reader],
        )
        score = provider.get_meter("svc").create_histogram(
            "modelward.feedback.score", explicit_bucket_boundaries_advisory=[1, 2, 3, 4, 5]
        )
        for _ in range(40):
            for value in scores:
                score.record(value)
        body = encode_metrics(reader.get_metrics_data()).SerializeToString()
        provider.shutdown()
        assert _post(served, body, kind="protobuf").status_code == 200
    stored = metric_points(served.registry.ctx, "chat")
    assert {(p.version, p.release_id) for p in stored} == {(1, release), (2, None)}
    result = canary.judge("chat", "staging", act=True)
    assert result.verdict.verdict == "rollback", result.verdict.reasons
    (feedback,) = result.verdict.metrics
    assert feedback.source == "modelward.feedback.score" and feedback.n_canary == 200
    assert result.acted is not None
