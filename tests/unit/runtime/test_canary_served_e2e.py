"""End to end on the example service: a real (tiny) transformers model, v1 and a v2 that refuses
more, both loaded with `modelward.load` and served on CPU; their OTel GenAI spans are ingested by
the telemetry service; the canary of v2 is judged after every batch of requests and rolls
staging back to v1 by itself; the ledger shows the signed decision and the restored release."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelward.services.audit import AuditService
from modelward.services.canary import CanaryService, telemetry_source
from modelward.services.telemetry import TelemetryService
from modelward.storage.metadata.gate_repository import GateRepository

from .conftest import Registry


@pytest.mark.slow
def test_a_canary_that_refuses_more_is_rolled_back_on_served_traffic(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from examples.serve_model.service import (
        Degradation,
        ModelService,
        ServiceConfig,
        make_tiny_model,
    )

    registry.service.push(make_tiny_model(tmp_path / "v1", seed=0), "tiny")
    registry.service.push(make_tiny_model(tmp_path / "v2", seed=1), "tiny")
    baseline = registry.gate.promote("models:/tiny/1", "staging").release
    assert baseline is not None
    spans = tmp_path / "spans.jsonl"

    def serve(arm: str) -> ModelService:
        return ModelService(
            ServiceConfig(
                "models:/tiny@staging",
                environment="staging",
                cache_dir=str(tmp_path / "cache"),
                span_file=str(spans),
                arm=arm,
                batch_size=1000,
            )
        )

    old = serve("baseline")  # verified load of v1, the environment's release
    candidate = registry.gate.promote("models:/tiny/2", "staging").release
    assert candidate is not None
    new = serve("canary")  # verified load of v2, now the environment's release
    assert (old.version, new.version) == (1, 2)
    new.set_degradation(Degradation(refusal_rate=0.3, seed=3))
    canary = CanaryService(registry.context, source=telemetry_source(registry.context))
    started = canary.start(
        "tiny",
        "staging",
        "models:/tiny/2",
        metrics=["refusal:0.02", "error:0.05"],
        min_samples=30,
    )
    assert started["baseline_release_id"] == baseline.release_id
    telemetry = TelemetryService(registry.context)
    verdicts = []
    for batch in range(15):  # a verdict after every batch: continuous peeking
        for i in range(15):
            for service in (new, old):
                service.generate(f"request {batch} {i}", max_new_tokens=3)
        new.flush()
        old.flush()
        telemetry.ingest_files([spans])  # spans already stored are not stored again
        result = canary.judge("tiny", "staging", act=True)
        verdicts.append(result.verdict.verdict)
        if result.verdict.verdict == "rollback":
            break
    assert verdicts[-1] == "rollback", verdicts
    assert "inconclusive" in verdicts[0]  # 15 per arm: below the minimum sample
    counts = result.verdict.counts
    assert counts["canary"] == counts["baseline"] == 15 * len(verdicts)
    with registry.context.database.read() as conn:
        current = GateRepository(conn).current_release("tiny", "staging")
    assert current is not None and current.release.version == 1
    assert current.release.restores_release_id == baseline.release_id
    assert result.acted == f"rolled back to {current.release.release_id}"
    events = AuditService.for_registry(registry.context).log()
    assert [e.action for e in events][-2:] == ["release.rollback", "canary.verdict"]
    assert events[-1].details["verdict"] == "rollback"
    assert events[-1].details["statement_digest"] == result.statement_digest
