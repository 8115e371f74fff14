"""Canary, drift and alerts commands through the real `modelward` console script: start against
the environment's release, bad metric specs and missing telemetry as clean usage errors,
webhooks admin-only, every error JSON with --json."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward
from tests.unit.registry.bundles import make_bundle

from modelward.services.context import open_registry
from modelward.services.gate import GateService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.users import UserService

Run = Callable[..., subprocess.CompletedProcess[str]]
ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: anything goes\n"


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Run:
    home = tmp_path / "home"
    monkeypatch.setenv("MODELWARD_HOME", str(home))
    monkeypatch.setenv("MODELWARD_ACTOR", "alice")
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    initialize_registry(home)
    context = open_registry(home)
    try:
        UserService(context, actor="alice").add("rita", "releaser")
        registry = RegistryService(context, actor="alice")
        registry.push(make_bundle(tmp_path / "v1", seed=1), "llama")
        registry.push(make_bundle(tmp_path / "v2", seed=2), "llama")
        gate = GateService(context, actor="alice")
        gate.set_policy("staging", ALLOW)
        gate.promote("models:/llama/1", "staging")
    finally:
        context.close()

    def run(*args: str, actor: str = "alice") -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor})

    return run


@pytest.mark.slow
def test_canary_start_and_errors(cli: Run, tmp_path: Path) -> None:
    started = cli(
        "canary",
        "start",
        "llama",
        "--env",
        "staging",
        "--candidate",
        "models:/llama/2",
        "--metric",
        "refusal:0.01",
        "--metric",
        "latency:5%",
        "--json",
    )
    assert started.returncode == 0, started.stderr
    data = json.loads(started.stdout)
    assert data["baseline_version"] == 1 and data["candidate_version"] == 2
    assert [m["name"] for m in data["metrics"]] == ["refusal", "latency"]
    bad = cli(
        "canary",
        "start",
        "llama",
        "--env",
        "staging",
        "--candidate",
        "models:/llama/2",
        "--metric",
        "vibes:1",
        "--json",
    )
    assert_clean_error(bad, 2, "unknown canary metric")
    assert json.loads(bad.stdout)["error"]["exit_code"] == 2
    assert_clean_error(
        cli("canary", "watch", "llama", "--env", "staging", "--max-iterations", "0"),
        2,
        "--max-iterations",
    )


@pytest.mark.slow
def test_webhooks_are_admin_only(cli: Run, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123\n")
    args = (
        "alerts",
        "webhook",
        "add",
        "ops",
        "--url",
        "http://127.0.0.1:9/h",
        "--key-id",
        "k1",
        "--secret-file",
        str(secret),
    )
    assert_clean_error(cli(*args, actor="rita"), 1, "admin")
    added = cli(*args, "--json")
    assert added.returncode == 0, added.stderr
    listed = json.loads(cli("alerts", "webhook", "list", "--json").stdout)
    assert listed[0]["name"] == "ops" and listed[0]["problem"] is None
    assert "secret" not in listed[0]
