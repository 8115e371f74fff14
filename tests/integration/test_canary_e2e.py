"""End to end on a real (tiny) model: v1 and a slower v2 are pushed, released and served; a
canary of v2 is judged after every batch of requests; the judge rolls staging back to v1
automatically, the ledger holds the signed decision and the restored release, and the alert
reaches a webhook on 127.0.0.1, signed.

The model is a small byte-level language model in torch whose weights are safetensors files
pushed through the registry and pulled back verified; v2 is deeper, so really slower. Each
request is a real greedy generation, timed; the serving loop reports it as an `Observation`
(the shape telemetry stores)."""

from __future__ import annotations

import http.server
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import safetensors.torch as safetensors_torch
import torch

from modelward.core.observations import Observation
from modelward.runtime.alerts import SIGNATURE_HEADER, verify_signature
from modelward.runtime.sources import InMemoryObservations
from modelward.services.alerts import AlertService
from modelward.services.audit import AuditService
from modelward.services.canary import CanaryService
from modelward.services.context import open_registry
from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.storage.metadata.gate_repository import GateRepository

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: anything goes\n"
SECRET = b"e2e-webhook-secret-0123456789"


def write_model(folder: Path, layers: int, hidden: int, seed: int) -> Path:
    folder.mkdir(parents=True)
    generator = torch.Generator().manual_seed(seed)
    tensors = {"embed": torch.randn(256, hidden, generator=generator) * 0.1}
    for i in range(layers):
        tensors[f"layer{i}"] = torch.randn(hidden, hidden, generator=generator) / hidden**0.5
    tensors["head"] = torch.randn(hidden, 256, generator=generator) * 0.1
    safetensors_torch.save_file(tensors, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"layers": layers, "hidden": hidden}))
    return folder


class ServedModel:
    def __init__(self, folder: Path) -> None:
        self.weights = safetensors_torch.load_file(str(folder / "model.safetensors"))
        self.layers = json.loads((folder / "config.json").read_text())["layers"]

    def generate(self, prompt: bytes, new_tokens: int = 12) -> bytes:
        tokens = list(prompt)
        with torch.no_grad():
            for _ in range(new_tokens):
                h = self.weights["embed"][torch.tensor(tokens[-8:])].mean(dim=0)
                for i in range(self.layers):
                    h = torch.tanh(h @ self.weights[f"layer{i}"])
                tokens.append(int(torch.argmax(h @ self.weights["head"])))
        return bytes(tokens[len(prompt) :])


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[dict[str, str], bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((dict(self.headers), body))
        self.send_response(204 if len(type(self).received) > 1 else 500)  # the first fails
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    _Receiver.received = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/alerts"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.mark.slow
def test_canary_of_a_slower_version_is_rolled_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, webhook: str
) -> None:
    torch.set_num_threads(1)
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    try:
        registry = RegistryService(context)
        registry.push(write_model(tmp_path / "v1", layers=1, hidden=32, seed=1), "chat")
        registry.push(write_model(tmp_path / "v2", layers=24, hidden=192, seed=2), "chat")
        gate = GateService(context)
        gate.set_policy("staging", ALLOW)
        baseline = gate.promote("models:/chat/1", "staging").release
        candidate = gate.promote("models:/chat/2", "staging").release
        assert baseline is not None and candidate is not None
        AlertService(context).add_webhook("ops", webhook, "ops-key", SECRET)

        served = {}
        for version in (1, 2):
            out = tmp_path / f"served-v{version}"
            registry.pull_to(f"models:/chat/{version}", out)  # verified on the way out
            served[version] = ServedModel(out)

        source = InMemoryObservations()
        canary = CanaryService(context, source=source)
        canary.start("chat", "staging", "models:/chat/2", metrics=["latency:20%"], min_samples=40)
        verdicts = []
        for batch in range(20):  # a verdict after every batch of requests: continuous peeking
            for i in range(40):
                for version, arm in ((2, "canary"), (1, "baseline")):
                    started = time.perf_counter()
                    answer = served[version].generate(f"request {batch}-{i}".encode())
                    duration = time.perf_counter() - started
                    source.add(
                        Observation(
                            model="chat",
                            version=version,
                            release_id=candidate.release_id,
                            environment="staging",
                            time_unix_nano=time.time_ns(),
                            trace_id=f"{batch:08x}{i:08x}{version:016x}",
                            span_id=f"{i:016x}",
                            error=False,
                            duration_s=duration,
                            output_tokens=len(answer),
                            finish_reason="length",
                            arm=arm,
                        )
                    )
            result = canary.judge("chat", "staging", act=True)
            verdicts.append(result.verdict.verdict)
            if result.verdict.verdict == "rollback":
                break
        assert verdicts[-1] == "rollback", verdicts
        assert result.acted is not None and result.acted.startswith("rolled back to ")
        assert result.alerted == 1
        with context.database.read() as conn:
            current = GateRepository(conn).current_release("chat", "staging")
        assert current is not None
        assert current.release.version == 1
        assert current.release.restores_release_id == baseline.release_id
        events = [(e.action, e.details) for e in AuditService.for_registry(context).log()]
        actions = [a for a, _ in events]
        assert actions[-2:] == ["release.rollback", "canary.verdict"]
        decision = events[-1][1]
        assert decision["verdict"] == "rollback" and decision["acted"] == result.acted
        headers, body = _Receiver.received[-1]
        assert len(_Receiver.received) == 2  # retried once
        assert verify_signature(body, SECRET, headers[SIGNATURE_HEADER])
        alert = json.loads(body)
        assert alert["event"] == "canary.rollback"
        assert alert["payload"]["statement_digest"] == result.statement_digest
    finally:
        context.close()
