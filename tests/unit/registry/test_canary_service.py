"""Canary service: start against the environment's release, signed and ledgered verdicts,
`act` rolls back once and alerts, rows verified against the ledger; webhooks signed with HMAC,
retried with back-off against a receiver on 127.0.0.1 that fails the first attempts."""

from __future__ import annotations

import http.server
import json
import random
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from modelward.core.dsse import Envelope
from modelward.core.intoto import Statement
from modelward.core.observations import Observation
from modelward.errors import InputError, NotFoundError, PermissionDeniedError, VerificationError
from modelward.runtime.alerts import KEY_ID_HEADER, SIGNATURE_HEADER, verify_signature
from modelward.runtime.sources import InMemoryObservations
from modelward.services.alerts import AlertService
from modelward.services.canary import VERDICT_PREDICATE_TYPE, CanaryService
from modelward.services.context import utc_now
from modelward.services.gate import GateService
from modelward.services.users import UserService
from modelward.signing.keys import Verifier
from modelward.storage.metadata.gate_repository import GateRepository

from .bundles import make_bundle
from .conftest import Registry

ALLOW = b"""
rules:
  - id: always
    expression: 'true'
    message: anything goes in these tests
"""
SECRET = b"0123456789abcdef0123"


@pytest.fixture
def gate(registry: Registry, tmp_path: Path) -> GateService:
    service = GateService(registry.context)
    for environment in service.config.environments:
        service.set_policy(environment, ALLOW)
    registry.service.push(make_bundle(tmp_path / "v1", seed=1), "llama")
    registry.service.push(make_bundle(tmp_path / "v2", seed=2), "llama")
    assert service.promote("models:/llama/1", "staging").release
    return service


def traffic(
    n: int, candidate_refusal: float, base: int, release_ids: tuple[str, str], seed: int = 1
) -> list[Observation]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        for version, p, release_id, k in (
            (2, candidate_refusal, release_ids[0], "c"),
            (1, 0.05, release_ids[1], "b"),
        ):
            out.append(
                Observation(
                    model="llama",
                    version=version,
                    release_id=release_id,
                    environment="staging",
                    time_unix_nano=base + (i + 1) * 1_000_000,
                    trace_id=f"{k}{i:031x}",
                    span_id=f"{i:016x}",
                    error=False,
                    duration_s=rng.lognormvariate(0, 0.2),
                    refusal=rng.random() < p,
                )
            )
    return out


def _ns_now() -> int:
    return int(utc_now().timestamp() * 1e9)


def _current(registry: Registry) -> Any:
    with registry.context.database.read() as conn:
        row = GateRepository(conn).current_release("llama", "staging")
    assert row is not None
    return row.release


def test_split_canary_start_status_and_judge(registry: Registry, gate: GateService) -> None:
    source = InMemoryObservations()
    canary = CanaryService(registry.context, source=source)
    with pytest.raises(NotFoundError):
        canary.start("llama", "production", "models:/llama/2")  # no release there
    with pytest.raises(InputError, match="baseline must be"):
        canary.start("llama", "staging", "models:/llama/2", "models:/llama/2")
    started = canary.start(
        "llama",
        "staging",
        "models:/llama/2",
        "models:/llama/1",
        ["refusal:0", "latency:10%"],
        min_samples=50,
    )
    baseline = started["baseline_release_id"]
    assert baseline == _current(registry).release_id
    assert canary.judge("llama", "staging").verdict.verdict == "inconclusive"  # no data yet
    source.add(*traffic(2000, 0.12, _ns_now(), (baseline, baseline)))
    status = canary.status("llama", "staging")
    assert status["verdict"] == "rollback" and status["ended"] is False
    result = canary.judge("llama", "staging", act=True)
    assert result.verdict.verdict == "rollback"
    assert result.acted is not None and "stays on" in result.acted
    assert _current(registry).release_id == baseline  # the environment did not move
    # the verdict is a DSSE in-toto statement signed by the registry key, and ledgered
    with registry.context.database.read() as conn:
        row = conn.exec_driver_sql("select envelope from canary_verdicts order by id desc").first()
    assert row is not None
    envelope = Envelope.from_dict(json.loads(row[0]))
    verifier = Verifier(registry.context.signer.public_key)
    assert any(verifier.is_valid(s.sig, envelope.pae()) for s in envelope.signatures)
    statement = Statement.from_bytes(envelope.payload)
    assert statement.predicate_type == VERDICT_PREDICATE_TYPE
    assert statement.predicate["verdict"] == "rollback"
    assert statement.predicate["metrics"][0]["p_degraded_holm"] <= 0.05
    actions = [e.action for e in registry.events()]
    assert actions.count("canary.verdict") == 2 and "canary.start" in actions
    # a canary acts once
    again = canary.judge("llama", "staging", act=True)
    assert again.acted is None and "already acted" in again.verdict.reasons[-1]
    assert registry.audit_verify().ok


def test_promoted_candidate_is_rolled_back_and_alerted(
    registry: Registry, gate: GateService
) -> None:
    baseline = _current(registry).release_id
    gate.promote("models:/llama/2", "staging")
    candidate_release = _current(registry).release_id
    source = InMemoryObservations()
    alerts: list[tuple[str, dict[str, Any]]] = []
    canary = CanaryService(
        registry.context, source=source, alert=lambda e, p: alerts.append((e, p)) or 1
    )
    # after the promotion the baseline is the release before the candidate's
    started = canary.start("llama", "staging", "models:/llama/2", min_samples=50)
    assert started["baseline_release_id"] == baseline
    source.add(*traffic(2000, 0.15, _ns_now(), (candidate_release, baseline)))
    result = canary.judge("llama", "staging", act=True)
    assert result.verdict.verdict == "rollback"
    restored = _current(registry)
    assert restored.version == 1 and restored.restores_release_id == baseline
    assert result.acted == f"rolled back to {restored.release_id}"
    assert alerts and alerts[0][0] == "canary.rollback"
    actions = [e.action for e in registry.events()]
    assert actions[-2:] == ["release.rollback", "canary.verdict"]
    assert registry.audit_verify().ok


def test_no_rollback_without_its_recorded_verdict_and_none_twice(
    registry: Registry, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelward.errors import StorageError
    from modelward.storage.metadata.canary_repository import CanaryRepository

    baseline = _current(registry).release_id
    gate.promote("models:/llama/2", "staging")
    candidate_release = _current(registry).release_id
    source = InMemoryObservations()
    alerts: list[tuple[str, dict[str, Any]]] = []
    canary = CanaryService(
        registry.context, source=source, alert=lambda e, p: alerts.append((e, p)) or 1
    )
    canary.start("llama", "staging", "models:/llama/2", min_samples=50)
    source.add(*traffic(2000, 0.15, _ns_now(), (candidate_release, baseline)))
    real = CanaryRepository.add_verdict

    def broken(self: CanaryRepository, **kwargs: Any) -> int:
        raise StorageError("disk full")

    monkeypatch.setattr(CanaryRepository, "add_verdict", broken)
    with pytest.raises(StorageError):
        canary.judge("llama", "staging", act=True)
    assert _current(registry).release_id == candidate_release  # not rolled back
    assert not alerts
    monkeypatch.setattr(CanaryRepository, "add_verdict", real)
    first = canary.judge("llama", "staging", act=True)
    assert first.acted is not None and first.acted.startswith("rolled back to")
    second = canary.judge("llama", "staging", act=True)
    assert second.acted is None and "already acted" in second.verdict.reasons[-1]
    assert [e.action for e in registry.events()].count("release.rollback") == 1
    assert registry.audit_verify().ok


def test_release_changed_mid_window_holds(registry: Registry, gate: GateService) -> None:
    source = InMemoryObservations()
    canary = CanaryService(registry.context, source=source)
    started = canary.start("llama", "staging", "models:/llama/2", min_samples=50)
    source.add(*traffic(2000, 0.2, _ns_now(), (started["baseline_release_id"],) * 2))
    registry.service.push(make_bundle(registry.home.parent / "v3", seed=3), "llama")
    gate.promote("models:/llama/3", "staging")  # someone released another version
    result = canary.judge("llama", "staging", act=True)
    assert result.verdict.verdict == "inconclusive" and result.acted is None
    assert "start a new canary" in result.verdict.reasons[0]


def test_forged_rows_are_refused(registry: Registry, gate: GateService) -> None:
    source = InMemoryObservations()
    canary = CanaryService(registry.context, source=source)
    canary.start("llama", "staging", "models:/llama/2")
    canary.judge("llama", "staging")
    registry.sql("update canary_verdicts set verdict = 'promote'")
    with pytest.raises(VerificationError, match="canary verdict"):
        canary.status("llama", "staging")
    assert any("canary verdict 1" in p for p in registry.audit_verify().problems)
    registry.sql("delete from canary_verdicts")
    registry.sql("update canaries set baseline_release_id = 'rel-999'")
    with pytest.raises(VerificationError, match="canary 1"):
        canary.judge("llama", "staging")


def test_viewers_cannot_start_or_record(registry: Registry, gate: GateService) -> None:
    UserService(registry.context).add("victor", "viewer")
    canary = CanaryService(registry.context, actor="victor", source=InMemoryObservations())
    with pytest.raises(PermissionDeniedError):
        canary.start("llama", "staging", "models:/llama/2")
    CanaryService(registry.context, source=InMemoryObservations()).start(
        "llama", "staging", "models:/llama/2"
    )
    with pytest.raises(PermissionDeniedError):
        canary.judge("llama", "staging", act=True)
    assert canary.status("llama", "staging")["verdict"] == "inconclusive"  # viewing is allowed


# ------------------------------------------------------------------------------ webhooks


class _Receiver(http.server.BaseHTTPRequestHandler):
    fail_first = 2
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        status = 503 if len(type(self).received) <= type(self).fail_first else 204
        self.send_response(status)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[str]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hook"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def test_webhook_signed_retried_recorded(registry: Registry, receiver: str) -> None:
    waits: list[float] = []
    alerts = AlertService(registry.context, sleep=waits.append, first_delay_s=0.01)
    alerts.add_webhook("ops", receiver, "k1", SECRET)
    report = alerts.send("canary.rollback", {"model": "llama"})
    assert report.delivered == 1
    assert waits == [0.01, 0.02]  # exponential back-off between the three attempts
    headers, body = _Receiver.received[-1]
    assert headers[KEY_ID_HEADER] == "k1"
    assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
    assert not verify_signature(body, b"another secret!!", headers[SIGNATURE_HEADER])
    assert json.loads(body)["payload"] == {"model": "llama"}
    outcomes = [d["outcome"] for d in reversed(alerts.deliveries())]
    assert outcomes == ["failed", "failed", "delivered"]


def test_webhook_gives_up_bounded_and_forged_url_is_skipped(
    registry: Registry, receiver: str
) -> None:
    _Receiver.fail_first = 100
    try:
        alerts = AlertService(registry.context, sleep=lambda s: None, attempts=3)
        alerts.add_webhook("ops", receiver, "k1", SECRET)
        report = alerts.send("canary.rollback", {})
        assert report.delivered == 0 and report.failed == ["ops"]
        assert len(_Receiver.received) == 3
        assert alerts.deliveries()[0]["outcome"] == "gave_up"
    finally:
        _Receiver.fail_first = 2
    registry.sql("update alert_webhooks set url = 'http://127.0.0.1:9/attacker'")
    report = alerts.send("canary.rollback", {})
    assert report.delivered == 0 and report.skipped and "webhook 1" in report.skipped[0]


def test_only_admins_configure_webhooks(registry: Registry) -> None:
    UserService(registry.context).add("rita", "releaser")
    with pytest.raises(PermissionDeniedError, match="admin"):
        AlertService(registry.context, actor="rita").add_webhook(
            "ops", "http://127.0.0.1:1/", "k", SECRET
        )
    with pytest.raises(InputError):
        AlertService(registry.context).add_webhook("ops", "file:///etc/passwd", "k", SECRET)
    with pytest.raises(InputError):
        AlertService(registry.context).add_webhook("ops", "http://127.0.0.1:1/", "k", b"short")


def test_the_canary_judge_job_acts_as_who_queued_it(
    registry: Registry, gate: GateService, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelward.services.canary as canary_module
    from modelward.services.jobs import JobService

    source = InMemoryObservations()
    monkeypatch.setattr(canary_module, "telemetry_source", lambda _context: source)
    started = CanaryService(registry.context, source=source).start(
        "llama", "staging", "models:/llama/2", min_samples=50
    )
    source.add(*traffic(2000, 0.2, _ns_now(), (started["baseline_release_id"],) * 2))
    jobs = JobService(registry.context)
    jobs.enqueue("canary.judge", {"model": "llama", "environment": "staging"}, "alice")
    done = jobs.run_one("worker-1")
    assert done is not None and done.state == "done", done
    assert done.result is not None and done.result["verdict"] == "rollback"
    assert done.result["acted"] is not None
    UserService(registry.context).add("vera", "viewer")
    jobs.enqueue("canary.judge", {"model": "llama", "environment": "staging"}, "vera")
    refused = jobs.run_one("worker-1")
    assert refused is not None and refused.state == "failed"
    assert refused.result is not None and refused.result["type"] == "PermissionDeniedError"


def test_cli_judge_watch_shadow_and_drift_in_process(
    registry: Registry,
    gate: GateService,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import modelward.services.canary as canary_module
    from modelward.interfaces.cli import main

    source = InMemoryObservations()
    monkeypatch.setattr(canary_module, "telemetry_source", lambda _context: source)
    assert (
        main(
            [
                "canary",
                "start",
                "llama",
                "--env",
                "staging",
                "--candidate",
                "models:/llama/2",
                "--min-samples",
                "50",
            ]
        )
        == 0
    )
    baseline = _current(registry).release_id
    obs = traffic(1500, 0.15, _ns_now(), (baseline, baseline))
    shadows = [
        Observation(
            **{
                **o.to_dict(),
                "arm": "shadow",
                "span_id": "s" + o.span_id[1:],
                "trace_id": "b" + o.trace_id[1:],
                "output_tokens": 40,
            }
        )
        for o in obs
        if o.version == 2
    ][:200]
    baselines = [Observation(**{**o.to_dict(), "output_tokens": 20}) for o in obs if o.version == 1]
    source.add(*[o for o in obs if o.version == 2], *baselines, *shadows)
    capsys.readouterr()
    assert main(["canary", "shadow", "llama", "--env", "staging", "--json"]) == 0
    shadow = json.loads(capsys.readouterr().out)
    assert shadow["pairs"] == 200 and shadow["status"] == "differs"
    assert main(["canary", "status", "llama", "--env", "staging"]) == 0
    assert "verdict: rollback" in capsys.readouterr().out
    assert (
        main(
            [
                "canary",
                "watch",
                "llama",
                "--env",
                "staging",
                "--interval",
                "0",
                "--max-iterations",
                "3",
                "--json",
            ]
        )
        == 1
    )
    watched = json.loads(capsys.readouterr().out)
    assert watched["iterations"] == 1 and watched["verdict"] == "rollback"
    assert main(["canary", "judge", "llama", "--env", "staging"]) == 1
    assert "already acted" in capsys.readouterr().out
    assert main(["drift", "llama", "--env", "staging", "--json"]) == 0
    drift = json.loads(capsys.readouterr().out)
    assert drift["baseline_release_id"] is None and drift["drift"] is False


def test_drift_of_a_release_against_the_one_before(registry: Registry, gate: GateService) -> None:
    from modelward.services.drift import DriftService

    first = _current(registry).release_id
    gate.promote("models:/llama/2", "staging")
    second = _current(registry).release_id
    rng = random.Random(5)
    source = InMemoryObservations()
    for i in range(600):
        for release_id, version, scale in ((first, 1, 1.0), (second, 2, 1.6)):
            source.add(
                Observation(
                    "llama",
                    version,
                    release_id,
                    "staging",
                    i,
                    f"{version}{i:031x}",
                    "01",
                    False,
                    duration_s=scale * rng.lognormvariate(0, 0.3),
                    output_tokens=50,
                    finish_reason="stop",
                )
            )
    report = DriftService(registry.context, source=source).report("llama", "staging")
    assert report["baseline_release_id"] == first and report["release_id"] == second
    metrics = {m["name"]: m for m in report["metrics"]}
    assert metrics["latency"]["status"] == "drift"
    assert metrics["output_tokens"]["status"] == "ok"
    assert report["drift"] is True
