"""Telemetry out as a time series: per release and window, the sums and counts the database adds
up (`TelemetryService.series`), agreeing with the per-window summaries computed from every
observation; windows aligned on the range's start; a field no span carried counted as absent,
never as zero; a model-limited principal refused another model's series."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelward.core.principal import Principal, bind_principal
from modelward.errors import InputError, PermissionDeniedError
from modelward.services.telemetry import TelemetryService

from .conftest import Registry, request, span

NOW = 1_899_999_960 * 10**9  # a whole minute: windows align with the summaries' (on 0)
S = 10**9


def _bundle(folder: Path, seed: int) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    folder.mkdir(parents=True)
    save_file({"w": np.full((4, 4), seed, dtype=np.float32)}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    return folder


def _two_releases(registry: Registry, tmp_path: Path) -> list[str]:
    ids = []
    for number in (1, 2):
        registry.service.push(_bundle(tmp_path / f"v{number}", number), "chat")
        result = registry.gate.promote(f"models:/chat/{number}", "staging")
        assert result.release is not None
        ids.append(result.release.release_id)
    return ids


def test_series_adds_up_per_release_and_window_as_the_summaries_do(
    registry: Registry, tmp_path: Path
) -> None:
    old, new = _two_releases(registry, tmp_path)
    base = NOW - 3600 * S
    spans = [
        span(
            base + i * 10 * S,
            duration_ns=(200 + 10 * (i % 3)) * 10**6,
            error=i % 7 == 0,
            **{
                "gen_ai.operation.name": "chat",
                "modelward.release": old if i < 33 else new,
                "gen_ai.usage.output_tokens": 40 + i,
                "modelward.refusal": i % 5 == 0,
                # time to first token only on the new release's spans
                **({"gen_ai.server.time_to_first_token": 0.05} if i >= 33 else {}),
            },
        )
        for i in range(60)
    ]
    service = TelemetryService(registry.context, clock_ns=lambda: NOW)
    assert service.ingest_otlp(request(spans)).accepted == 60
    since, until = base, base + 600 * S
    series = service.series("chat", "staging", since_ns=since, until_ns=until, window_s=60)
    summaries = service.summary("chat", "staging", window_s=60, since_ns=since, until_ns=until)
    assert len(series) == len(summaries) > 2
    for totals, summary in zip(series, summaries, strict=True):
        assert (totals.window_start_ns, totals.release_id, totals.version) == (
            summary.window_start_ns,
            summary.release_id,
            summary.version,
        )
        assert totals.requests == summary.requests and totals.errors == summary.errors
        assert summary.latency_s is not None and summary.output_tokens is not None
        assert totals.latency_sum_s / totals.latency_n == pytest.approx(summary.latency_s.mean)
        assert totals.output_tokens_sum / totals.output_tokens_n == pytest.approx(
            summary.output_tokens.mean
        )
        assert totals.refusals == summary.refusals and totals.refusal_n == summary.requests
        if totals.release_id == old:
            assert totals.ttft_n == 0 and summary.ttft_s is None  # not observed, not zero
        else:
            assert totals.ttft_n == totals.requests and totals.ttft_sum_s == pytest.approx(
                0.05 * totals.requests
            )
    # i = 33 is the new release's first span: the window of i = 30 .. 35 holds both
    assert {t.release_id for t in series if t.window_start_ns == base + 300 * S} == {old, new}
    assert sum(t.requests for t in series) == 60  # [since, until): i = 0 .. 59


def test_series_refuses_a_bad_range_and_another_models_principal(
    registry: Registry, tmp_path: Path
) -> None:
    _two_releases(registry, tmp_path)
    service = TelemetryService(registry.context, clock_ns=lambda: NOW)
    with pytest.raises(InputError):
        service.series("chat", since_ns=NOW, until_ns=NOW, window_s=60)
    with pytest.raises(InputError):
        service.series("chat", since_ns=NOW - 3600 * S, until_ns=NOW, window_s=0)
    with pytest.raises(InputError, match="windows"):
        service.series("chat", since_ns=NOW - 30 * 86400 * S, until_ns=NOW, window_s=1)
    limited = Principal(name="alice", issuer="modelward", model_pattern="team-*")
    with bind_principal(limited), pytest.raises(PermissionDeniedError):
        service.series("chat", since_ns=NOW - 3600 * S, until_ns=NOW, window_s=60)
    assert service.series("chat", since_ns=NOW - 3600 * S, until_ns=NOW, window_s=60) == []
