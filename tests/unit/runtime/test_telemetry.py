"""Telemetry in: GenAI (current and old names) and OpenInference spans mapped to observations,
attributed to the release that served them (by release id, or by model + environment at span
time), duplicates stored once, late and future spans guarded, hostile requests refused whole."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from modelward.errors import InputError, PermissionDeniedError
from modelward.runtime.genai import keyword_refusal_classifier
from modelward.runtime.signals import summarise
from modelward.services.telemetry import TelemetryService, observations
from modelward.storage.metadata.gate_repository import GateRepository

from .conftest import Registry, request, span

NOW = 1_900_000_000 * 10**9


def _bundle(folder: Path, seed: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.full((4, 4), seed, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    return folder


def _released(registry: Registry, tmp_path: Path, *versions: int) -> list[str]:
    """Push one version per seed and promote each to staging in turn; the release ids."""
    ids = []
    for number in versions:
        registry.service.push(_bundle(tmp_path / f"v{number}", number), "chat")
        result = registry.gate.promote(f"models:/chat/{number}", "staging")
        assert result.release is not None
        ids.append(result.release.release_id)
    return ids


def _release_start_ns(registry: Registry, release_id: str) -> int:
    with registry.context.database.read() as conn:
        row = GateRepository(conn).release_by_id(release_id)
    assert row is not None
    return int(row.release.created_at.timestamp() * 1e9)


def _service(registry: Registry, now: int = NOW, **kwargs: object) -> TelemetryService:
    return TelemetryService(registry.context, clock_ns=lambda: now, **kwargs)  # type: ignore[arg-type]


def test_current_and_old_genai_names_and_openinference_map_alike(
    registry: Registry, tmp_path: Path
) -> None:
    (release,) = _released(registry, tmp_path, 1)
    now = time.time_ns()
    body = request(
        [
            span(
                now - 3,
                gen_ai__operation__name="chat",
                gen_ai__usage__input_tokens=12,
                gen_ai__usage__output_tokens=30,
                gen_ai__response__finish_reasons=["length"],
                gen_ai__server__time_to_first_token=0.05,
            ),
            span(
                now - 2,
                gen_ai__system="llama.cpp",
                gen_ai__usage__prompt_tokens=12,
                gen_ai__usage__completion_tokens=30,
                gen_ai__response__finish_reasons=["stop"],
            ),
            span(
                now - 1,
                openinference__span__kind="LLM",
                llm__token_count__prompt=12,
                llm__token_count__completion=30,
                **{
                    f"llm__output_messages__0__message__tool_calls__{i}__tool_call__id": f"c{i}"
                    for i in range(2)
                },
            ),
            span(now, http__request__method="GET"),  # not a model call
        ],
        modelward__release=release,
    )
    result = _service(registry, now).ingest_otlp(body)
    assert result.to_dict()["accepted"] == 3 and result.skipped == 1 and not result.dropped
    found = observations(registry.context, "chat")
    assert [o.output_tokens for o in found] == [30, 30, 30]
    assert [o.input_tokens for o in found] == [12, 12, 12]
    assert [o.finish_reason for o in found] == ["length", "stop", None]
    assert found[2].tool_calls == 2
    assert all(
        o.release_id == release and o.version == 1 and o.environment == "staging" for o in found
    )
    assert found[0].ttft_s == pytest.approx(0.05)
    assert found[0].tpot_s == pytest.approx((0.2 - 0.05) / 29)
    assert found[0].duration_s == pytest.approx(0.2)


def test_duplicated_spans_are_stored_once(registry: Registry, tmp_path: Path) -> None:
    (release,) = _released(registry, tmp_path, 1)
    now = time.time_ns()
    spans = [span(now - i, gen_ai__usage__output_tokens=i) for i in range(5)]
    body = request([*spans, spans[0]], modelward__release=release)  # a repeat inside one request
    first = _service(registry, now).ingest_otlp(body)
    assert (first.accepted, first.duplicates) == (5, 1)
    again = _service(registry, now).ingest_otlp(body)  # the exporter retried
    assert (again.accepted, again.duplicates) == (0, 6)
    assert len(observations(registry.context, "chat")) == 5


def test_a_release_that_changes_mid_window_splits_the_window_and_late_spans_go_to_their_release(
    registry: Registry, tmp_path: Path
) -> None:
    first, second = _released(registry, tmp_path, 1, 2)
    start, change = _release_start_ns(registry, first), _release_start_ns(registry, second)
    assert start < change
    before, after = (start + change) // 2, change + 2 * 10**9
    service = _service(registry, change + 60 * 10**9)
    # only model + environment: the release is the one current at the span's end time
    body = request(
        [span(after, gen_ai__usage__output_tokens=5)],
        modelward__model="chat",
        deployment__environment__name="staging",
    )
    assert service.ingest_otlp(body).accepted == 1
    # a late span (arriving after the change) that ended before it goes to the first release
    late = request(
        [span(before, gen_ai__usage__output_tokens=7)],
        modelward__model="chat",
        deployment__environment__name="staging",
    )
    assert service.ingest_otlp(late).accepted == 1
    found = observations(registry.context, "chat", environment="staging")
    assert [(o.release_id, o.version) for o in found] == [(first, 1), (second, 2)]
    # one 5-minute window holding the change gives one summary per release, never mixed
    window = summarise(found, 3600.0, origin_ns=change - 10 * 10**9)
    assert [(w.release_id, w.requests, w.window_start_ns) for w in window] == [
        (first, 1, change - 10 * 10**9),
        (second, 1, change - 10 * 10**9),
    ]
    # a span stating version 1 well after the change (past the clock-skew allowance) was not
    # served by the release then current
    stale = request(
        [span(change + 20 * 10**9, gen_ai__usage__output_tokens=1)],
        modelward__model="chat",
        modelward__version=1,
        deployment__environment__name="staging",
    )
    service.ingest_otlp(stale)
    last = observations(registry.context, "chat", since_ns=change + 20 * 10**9)
    assert [(o.version, o.release_id) for o in last] == [(1, None)]
    assert observations(registry.context, "chat", release_id=second)[0].output_tokens == 5


def test_too_old_and_future_and_unattributable_spans_are_dropped_with_reasons(
    registry: Registry, tmp_path: Path
) -> None:
    (release,) = _released(registry, tmp_path, 1)
    now = time.time_ns()
    body = request(
        [
            span(now - 8 * 24 * 3600 * 10**9, gen_ai__usage__output_tokens=1),
            span(now + 3600 * 10**9, gen_ai__usage__output_tokens=1),
        ],
        modelward__release=release,
    )
    result = _service(registry, now).ingest_otlp(body)
    assert result.accepted == 0
    assert result.dropped == {"older than the accepted age": 1, "ends in the future": 1}
    nobody = request([span(now, gen_ai__usage__output_tokens=1)])
    assert _service(registry, now).ingest_otlp(nobody).dropped == {
        "names no release, model or known response model": 1
    }
    unknown = request([span(now, gen_ai__usage__output_tokens=1)], modelward__release="rel-99")
    assert list(_service(registry, now).ingest_otlp(unknown).dropped) == [
        "names a release that does not exist or does not verify"
    ]


def test_a_release_row_edited_behind_modelwards_back_attributes_nothing(
    registry: Registry, tmp_path: Path
) -> None:
    import sqlite3

    (release,) = _released(registry, tmp_path, 1)
    conn = sqlite3.connect(registry.home / "registry.db")
    conn.execute("UPDATE gate_releases SET created_by = 'mallory' WHERE release_id = ?", (release,))
    conn.commit()
    conn.close()
    now = time.time_ns()
    body = request([span(now, gen_ai__usage__output_tokens=1)], modelward__release=release)
    result = _service(registry, now).ingest_otlp(body)
    assert result.accepted == 0 and result.rejected == 1


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda s: s.update(traceId="zz" * 16), "traceId"),
        (lambda s: s.update(spanId="00" * 8), "all-zero"),
        (lambda s: s.update(endTimeUnixNano="soon"), "endTimeUnixNano"),
        (lambda s: s["attributes"].append({"key": "x", "value": {"doubleValue": "NaN"}}), "finite"),
        (
            lambda s: s["attributes"].append({"key": "x", "value": {"stringValue": "a" * 300_000}}),
            "over",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "gen_ai.usage.output_tokens", "value": {"stringValue": "many"}}
            ),
            "output tokens",
        ),
        (lambda s: s["attributes"].append({"key": "x", "value": {"intValue": True}}), "boolean"),
        (lambda s: s.update(attributes={"not": "a list"}), "expected a list"),
        (
            lambda s: s["attributes"].append(
                {"key": "deployment.environment.name", "value": {"stringValue": "e" * 150}}
            ),
            "environment",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "gen_ai.response.finish_reasons", "value": {"intValue": "3"}}
            ),
            "finish_reasons",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "modelward.feedback.score", "value": {"doubleValue": 1e308}}
            ),
            "feedback score must be within",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "modelward.feedback.score", "value": {"doubleValue": -2e6}}
            ),
            "feedback score must be within",
        ),
        (
            lambda s: s.update(
                startTimeUnixNano=str(int(s["endTimeUnixNano"]) - 2 * 86_400 * 10**9)
            ),
            "lasts more than",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "gen_ai.server.time_to_first_token", "value": {"doubleValue": 9e6}}
            ),
            "time to first token",
        ),
        (
            lambda s: s["attributes"].append(
                {"key": "gen_ai.usage.output_tokens", "value": {"intValue": "2000000000"}}
            ),
            "output tokens",
        ),
    ],
)
def test_hostile_requests_are_refused_whole_and_store_nothing(
    registry: Registry, mutate: object, fragment: str
) -> None:
    release = "rel-1"  # refused before attribution: no release needs to exist
    now = time.time_ns()
    good = span(now - 1, gen_ai__usage__output_tokens=1)
    bad = span(now, gen_ai__usage__output_tokens=1)
    mutate(bad)  # type: ignore[operator]
    with pytest.raises(InputError, match=fragment):
        _service(registry, now).ingest_otlp(request([good, bad], modelward__release=release))
    assert observations(registry.context, "chat") == []


def test_refusals_need_an_opt_in_classifier_and_content_is_not_stored_by_default(
    registry: Registry, tmp_path: Path
) -> None:
    (release,) = _released(registry, tmp_path, 1)
    now = time.time_ns()
    spans = [
        span(now - 1, gen_ai__completion="I'm sorry, but I can't help with that."),
        span(now, gen_ai__completion="Paris is the capital of France."),
    ]
    body = request(spans, modelward__release=release)
    _service(registry, now, refusal_classifier=keyword_refusal_classifier).ingest_otlp(body)
    assert [o.refusal for o in observations(registry.context, "chat")] == [True, False]
    from sqlalchemy import text

    with registry.context.database.read() as conn:
        stored = conn.execute(text("SELECT content FROM telemetry_observations")).fetchall()
    assert stored == [(None,), (None,)]


def test_only_telemetry_writers_may_ingest(registry: Registry, tmp_path: Path) -> None:
    from modelward.services.users import UserService

    (release,) = _released(registry, tmp_path, 1)
    UserService(registry.context).add("vera", "viewer")
    now = time.time_ns()
    body = request([span(now, gen_ai__usage__output_tokens=1)], modelward__release=release)
    with pytest.raises(PermissionDeniedError, match="telemetry"):
        TelemetryService(registry.context, "vera", clock_ns=lambda: now).ingest_otlp(body)


def test_protobuf_from_the_otel_sdk_maps_like_json(registry: Registry, tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    (release,) = _released(registry, tmp_path, 1)
    exporter = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"modelward.release": release}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    with tracer.start_as_current_span("chat smollm") as current:
        current.set_attribute("gen_ai.operation.name", "chat")
        current.set_attribute("gen_ai.usage.output_tokens", 9)
        current.set_attribute("gen_ai.response.finish_reasons", ["content_filter"])
    body = encode_spans(exporter.get_finished_spans()).SerializeToString()
    result = _service(registry, time.time_ns()).ingest_otlp(body, "application/x-protobuf")
    assert result.accepted == 1
    (found,) = observations(registry.context, "chat")
    assert (found.output_tokens, found.finish_reason, found.safety_triggered) == (
        9,
        "content_filter",
        True,
    )
    assert math.isclose(found.duration_s or 0, (found.duration_s or 0))
    with pytest.raises(InputError, match="ExportTraceServiceRequest"):
        _service(registry, time.time_ns()).ingest_otlp(b"\xff\xff\xff", "application/x-protobuf")
