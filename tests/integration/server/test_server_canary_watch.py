"""`modelward serve` with two worker processes, and the remote CLI: a canary started with
`--watch 1` over the server is judged and rolled back by the server's own job workers once the
feedback metrics sent to /v1/metrics show the candidate is worse, with no CLI running; each
interval slot is judged once across both processes; `canary status` and `drift` over the
server print what they print embedded."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
from opentelemetry.exporter.otlp.proto.common.metrics_encoder import encode_metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.resources import Resource
from sqlalchemy import create_engine, text
from tests.integration.server.harness import cli, create_token, remote_env, running
from tests.unit.registry.bundles import make_bundle

ALLOW = "rules:\n  - id: always\n    expression: 'true'\n    message: tests\n"


def _feedback(url: str, token: str, version: int, scores: list[int]) -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(
        resource=Resource.create(
            {
                "modelward.model": "watched",
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
    answer = httpx.post(
        f"{url}/v1/metrics",
        content=body,
        headers={"authorization": f"Bearer {token}", "content-type": "application/x-protobuf"},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text


def test_a_watched_canary_is_rolled_back_by_the_server(tmp_path: Path) -> None:
    local = {"MODELWARD_HOME": str(tmp_path / "home"), "MODELWARD_ACTOR": "root"}
    assert cli(local, "init").returncode == 0
    assert cli(local, "users", "add", "rex", "--role", "releaser").returncode == 0
    assert cli(local, "users", "add", "vic", "--role", "viewer").returncode == 0
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW)
    assert cli(local, "policy", "set", "staging", str(policy)).returncode == 0
    for seed in (1, 2):
        pushed = cli(local, "push", str(make_bundle(tmp_path / f"v{seed}", seed=seed)), "--model",
                     "watched")  # fmt: skip
        assert pushed.returncode == 0, pushed.stderr
        promoted = cli(local, "promote", f"models:/watched/{seed}", "--to", "staging")
        assert promoted.returncode == 0, promoted.stdout + promoted.stderr
    with running(local, tmp_path / "server.log", workers=2) as server:
        rex = remote_env(server, create_token(local, "rex"), tmp_path / "home-rex")
        vic = remote_env(server, create_token(local, "vic"), tmp_path / "home-vic")
        refused = cli(vic, "canary", "start", "watched", "--env", "staging", "--candidate",
                      "models:/watched/2", "--watch", "1")  # fmt: skip
        assert refused.returncode == 1 and "may not" in refused.stderr
        started = cli(
            rex, "canary", "start", "watched", "--env", "staging", "--candidate",
            "models:/watched/2", "--metric", "feedback:0.2:0.3", "--min-samples", "50",
            "--watch", "1",
        )  # fmt: skip
        assert started.returncode == 0, started.stderr
        assert "judged and acted on by the server every 1s" in started.stdout

        def steady(output: str) -> list[str]:  # the server records a verdict every second
            return [line for line in output.splitlines() if not line.startswith("  recorded")]

        for args in (
            ("canary", "status", "watched", "--env", "staging"),
            ("drift", "watched", "--env", "staging", "--json"),
        ):
            remote, embedded = cli(vic, *args), cli(local, *args)
            assert remote.returncode == embedded.returncode == 0, (args, remote.stderr)
            assert steady(remote.stdout) == steady(embedded.stdout), args
        telemetry = create_token(local, "rex", "--scope", "telemetry.write")
        _feedback(server.url, telemetry, 1, [5, 4, 5, 4, 5])
        _feedback(server.url, telemetry, 2, [1, 2, 1, 3, 2])
        deadline = time.monotonic() + 60
        while True:  # no CLI judges: the server's workers do
            status = cli(vic, "canary", "status", "watched", "--env", "staging", "--json")
            assert status.returncode == 0, status.stderr
            if json.loads(status.stdout)["ended"]:
                break
            assert time.monotonic() < deadline, server.log.read_text()
            time.sleep(0.5)
        time.sleep(2.5)  # more intervals pass: an ended canary is not judged again
        releases = cli(vic, "releases", "staging", "--model", "watched", "--json")
        assert releases.returncode == 0, releases.stderr
        current = json.loads(releases.stdout)[-1]
        assert current["current"] and current["kind"] == "rollback", current
        assert current["state"]["version"] == 1 and current["actor"] == "rex"
    engine = create_engine(f"sqlite:///{tmp_path / 'home' / 'registry.db'}")
    with engine.connect() as conn:
        jobs = conn.execute(
            text("select dedupe_key, state, created_by from jobs where kind = 'canary.judge'")
        ).all()
        verdicts = conn.execute(text("select verdict, acted from canary_verdicts")).all()
    engine.dispose()
    slots = sorted(int(str(key).rsplit(":", 1)[1]) for key, _, _ in jobs)
    assert slots == list(range(1, len(slots) + 1)), slots  # each slot once, across processes
    assert {(state, by) for _, state, by in jobs} == {("done", "rex")}
    assert len(verdicts) == len(jobs) and verdicts[-1][0] == "rollback"
    assert sum(1 for _, acted in verdicts if acted) == 1
