"""`canary`, `drift` and `alerts deliveries` against a server (MODELWARD_URL set) go through
`modelward.Client` with the same output and exit codes as embedded; a viewer cannot start or
judge a canary nor make drift alert, a token limited to another model is refused (by the route
and by the services themselves), and `alerts webhook` stays on the registry's host."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from safetensors.numpy import save_file

from modelward.client import Client
from modelward.core.principal import bind_principal
from modelward.errors import PermissionDeniedError
from modelward.interfaces.cli import main
from modelward.services.canary import CanaryService, telemetry_source
from modelward.services.drift import DriftService
from modelward.services.gate import GateService
from modelward.services.registry import RegistryService

from .conftest import Served

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: tests\n"
START = ["canary", "start", "llama", "--env", "staging", "--candidate", "models:/llama/2"]


class _SharedClient(Client):
    def close(self) -> None:  # the TestClient is the fixture's, not this command's
        pass


@pytest.fixture
def world(served: Served, tmp_path: Path) -> Served:
    for version in (1, 2):
        folder = tmp_path / f"v{version}"
        folder.mkdir()
        weights = np.full((4, 4), version, dtype=np.float32)
        save_file({"w": weights}, str(folder / "model.safetensors"))
        RegistryService(served.registry.ctx, "root").push(folder, "llama")
    gate = GateService(served.registry.ctx, "root")
    gate.set_policy("staging", ALLOW)
    assert gate.promote("models:/llama/1", "staging").release is not None
    return served


Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(
    world: Served,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> Run:
    """run(who, *argv, remote=True) -> (exit code, stdout, stderr); `who` is a role name,
    or a raw token with remote=True."""
    import modelward.interfaces.cli.remote as remote

    def call(who: str, *argv: str, remote_mode: bool = True) -> tuple[int, str, str]:
        token = world.tokens.get(who, who)
        with monkeypatch.context() as patch:
            if remote_mode:
                patch.setenv("MODELWARD_URL", "http://testserver")
                patch.setattr(
                    remote,
                    "client",
                    lambda: _SharedClient(
                        "http://testserver",
                        token,
                        http=world.http,
                        known_registries=tmp_path / "known.json",
                    ),
                )
            else:
                patch.delenv("MODELWARD_URL", raising=False)
                patch.setenv("MODELWARD_ACTOR", who)
            capsys.readouterr()
            code = main(list(argv))
            out, err = capsys.readouterr()
        return code, out, err

    return call


def _feedback(world: Served, version: int, scores: list[int]) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(
            {
                "modelward.model": "llama",
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
    headers = {**world.headers("releaser"), "content-type": "application/x-protobuf"}
    assert world.http.post("/v1/metrics", content=body, headers=headers).status_code == 200


def test_canary_commands_over_the_server_match_embedded(world: Served, run: Run) -> None:
    code, out, err = run("releaser", *START, "--metric", "feedback:0.2:0.3", "--min-samples", "50")
    assert code == 0, err
    assert out.startswith("canary 1: models:/llama/2 against release")
    for args in (
        ("canary", "status", "llama", "--env", "staging"),
        ("canary", "status", "llama", "--env", "staging", "--json"),
        ("drift", "llama", "--env", "staging"),
        ("drift", "llama", "--env", "staging", "--json"),
        ("alerts", "deliveries", "--json"),
    ):
        remote = run("viewer", *args)
        embedded = run("viewer", *args, remote_mode=False)
        assert remote[0] == embedded[0] == 0, (args, remote[2], embedded[2])
        assert remote[1] == embedded[1], args
    code, out, _ = run("releaser", "canary", "judge", "llama", "--env", "staging")
    assert code == 0 and "verdict: inconclusive" in out
    _feedback(world, 1, [5, 4, 5, 4, 5])
    _feedback(world, 2, [1, 2, 1, 3, 2])
    code, out, _ = run("releaser", "canary", "judge", "llama", "--env", "staging", "--act")
    assert code == 1 and "verdict: rollback" in out and "acted: canary ended" in out
    watch = ("canary", "watch", "llama", "--env", "staging", "--interval", "0", "--json")
    code, out, _ = run("releaser", *watch)
    assert code == 1 and '"verdict": "rollback"' in out
    code, out, _ = run("viewer", "canary", "shadow", "llama", "--env", "staging")
    assert code == 0 and out.startswith("shadow models:/llama/2")


def test_viewers_and_other_model_tokens_are_refused(world: Served, run: Run) -> None:
    code, _, err = run("viewer", *START)
    assert code == 1 and "may not" in err and "Traceback" not in err
    assert run("releaser", *START)[0] == 0
    for args in (
        ("canary", "judge", "llama", "--env", "staging"),
        ("canary", "judge", "llama", "--env", "staging", "--act"),
        ("canary", "watch", "llama", "--env", "staging", "--interval", "0"),
        ("drift", "llama", "--env", "staging", "--notify"),
    ):
        code, _, err = run("viewer", *args)
        assert code == 1 and "may not" in err, (args, err)
    other = world.token_for("releaser", model_pattern="other-*")
    for args in (
        START,
        ("canary", "status", "llama", "--env", "staging"),
        ("canary", "judge", "llama", "--env", "staging", "--act"),
        ("canary", "shadow", "llama", "--env", "staging"),
        ("drift", "llama", "--env", "staging"),
        ("alerts", "deliveries"),
    ):
        code, _, err = run(other, *args)
        assert code == 1 and "limited to models" in err, (args, err)
    # the services refuse it themselves, whatever the route checked
    principal = world.registry.authenticate(other)
    ctx = world.registry.ctx
    with bind_principal(principal), pytest.raises(PermissionDeniedError, match="limited"):
        CanaryService(ctx, principal.name, source=telemetry_source(ctx)).status("llama", "staging")
    with bind_principal(principal), pytest.raises(PermissionDeniedError, match="limited"):
        CanaryService(ctx, principal.name, source=telemetry_source(ctx)).judge("llama", "staging")
    with bind_principal(principal), pytest.raises(PermissionDeniedError, match="limited"):
        DriftService(ctx, principal.name, source=telemetry_source(ctx)).report("llama", "staging")
    with pytest.raises(PermissionDeniedError):
        DriftService(ctx, "viewer", source=telemetry_source(ctx)).report(
            "llama", "staging", notify=True
        )
    with ctx.database.read() as conn:
        verdicts = conn.exec_driver_sql("select count(*) from canary_verdicts").scalar()
    assert verdicts == 0


def test_webhook_configuration_stays_on_the_registry_host(run: Run) -> None:
    code, _, err = run("admin", "alerts", "webhook", "list")
    assert code == 2 and "HMAC secret" in err and "registry's host" in err
    code, _, err = run("admin", "alerts", "webhook", "list", remote_mode=False)
    assert code == 0, err
