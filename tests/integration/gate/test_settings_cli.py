"""The ledgered settings behind the gate's facts through the real console script: `keys trust /
untrust / trusted`, `eval thresholds set / unset / show`, `provenance require / requirements`,
and `facts`: roles, bad input (exit 2, no traceback, nothing changed) and ledger events."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.conftest import assert_clean_error, run_modelward

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(tmp_path: Path) -> Run:
    home = tmp_path / "home"

    def run(actor: str, *args: str) -> subprocess.CompletedProcess[str]:
        return run_modelward(*args, env={"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": actor})

    assert run("alice", "init").returncode == 0
    for name, role in (("bob", "trainer"), ("rev", "reviewer")):
        assert run("alice", "users", "add", name, "--role", role).returncode == 0
    return run


def _ok(result: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert result.returncode == 0, (result.stdout, result.stderr)
    return result


def _settings_events(run: Run) -> list[str]:
    events = json.loads(_ok(run("alice", "audit", "log", "--json")).stdout)
    return [e["subject"] for e in events if e["action"] == "settings.set"]


def test_trusted_keys_commands(run: Run, tmp_path: Path) -> None:
    key = tmp_path / "uploader.key"
    _ok(run("bob", "keys", "generate", "--out", str(key)))
    assert_clean_error(
        run("bob", "keys", "trust", f"{key}.pub", "--name", "mine"), 1, "may not change"
    )
    assert_clean_error(run("alice", "keys", "trust", str(tmp_path / "nope.pub"), "--name", "x"),
                       2, "cannot read")  # fmt: skip
    assert_clean_error(run("alice", "keys", "trust", str(key), "--name", "x"), 2, "key")
    home_key = tmp_path / "home" / "keys" / "registry.key.pub"
    assert_clean_error(
        run("alice", "keys", "trust", str(home_key), "--name", "reg"), 2, "registry's own key"
    )
    trusted = json.loads(_ok(run("alice", "keys", "trust", f"{key}.pub", "--name", "bob",
                                 "--json")).stdout)  # fmt: skip
    listed = json.loads(_ok(run("rev", "keys", "trusted", "--json")).stdout)
    assert [k["key_id"] for k in listed] == [trusted["key_id"]]
    assert "bob" in _ok(run("rev", "keys", "trusted")).stdout
    assert_clean_error(run("alice", "keys", "untrust", "nobody"), 2, "no trusted key")
    _ok(run("alice", "keys", "untrust", trusted["key_id"][:12]))
    assert json.loads(_ok(run("rev", "keys", "trusted", "--json")).stdout) == []
    assert _settings_events(run) == ["setting:trusted_keys", "setting:trusted_keys"]
    assert _ok(run("alice", "audit", "verify")).returncode == 0


def test_threshold_and_provenance_requirement_commands(run: Run, tmp_path: Path) -> None:
    assert_clean_error(
        run("bob", "eval", "thresholds", "set", "q", "--metric", "accuracy", "--min", "0.8"),
        1,
        "needs the admin or reviewer role",
    )
    assert_clean_error(run("rev", "eval", "thresholds", "set", "q", "--metric", "accuracy"),
                       2, "--min")  # fmt: skip
    assert_clean_error(
        run("rev", "eval", "thresholds", "set", "q", "--metric", "a", "--min", "nan"), 2, "finite"
    )
    _ok(run("rev", "eval", "thresholds", "set", "q", "--metric", "accuracy", "--min", "0.8"))
    _ok(run("rev", "eval", "thresholds", "set", "q", "--metric", "toxicity", "--max", "0.02"))
    text = _ok(run("bob", "eval", "thresholds", "show", "q")).stdout
    assert "accuracy >= 0.8" in text and "toxicity <= 0.02" in text
    document = tmp_path / "safety.yaml"
    document.write_text("refusals: {direction: lower}\nharm: {max: 0.1}\n")
    _ok(run("alice", "eval", "thresholds", "set", "safety", "--file", str(document)))
    bad = tmp_path / "bad.yaml"
    bad.write_text("harm: {min: 1, max: 2}\n")
    assert_clean_error(
        run("alice", "eval", "thresholds", "set", "safety", "--file", str(bad)), 2, "min or max"
    )
    shown = json.loads(_ok(run("bob", "eval", "thresholds", "show", "--json")).stdout)
    assert [s["suite"] for s in shown] == ["q", "safety"]
    assert shown[1]["metrics"]["refusals"] == {"direction": "lower", "threshold": None}
    _ok(run("rev", "eval", "thresholds", "unset", "q", "--metric", "toxicity"))

    default = json.loads(_ok(run("bob", "provenance", "requirements", "--json")).stdout)
    assert default["source"] == "default" and set(default["optional"]) == {"gpu", "base_model"}
    assert_clean_error(run("rev", "provenance", "require", "gpu"), 1, "may not change")
    assert_clean_error(run("alice", "provenance", "require", "gpus"), 2, "unknown provenance")
    assert_clean_error(run("alice", "provenance", "require"), 2, "--default")
    _ok(run("alice", "provenance", "require", "gpu", "datasets"))
    assert "required (set): datasets, gpu" in _ok(run("bob", "provenance", "requirements")).stdout
    _ok(run("alice", "provenance", "require", "--default"))
    assert _settings_events(run) == [
        "setting:eval.thresholds.q",
        "setting:eval.thresholds.q",
        "setting:eval.thresholds.safety",
        "setting:eval.thresholds.q",
        "setting:provenance.required_fields",
        "setting:provenance.required_fields",
    ]
    assert _ok(run("alice", "audit", "verify")).returncode == 0


def test_facts_command(run: Run, tmp_path: Path) -> None:
    bundle = tmp_path / "m"
    bundle.mkdir()
    (bundle / "config.json").write_text('{"layers": 1}')
    _ok(run("bob", "push", str(bundle), "--model", "m"))
    before = json.loads(_ok(run("alice", "audit", "log", "--json")).stdout)
    facts = json.loads(_ok(run("bob", "facts", "models:/m/1", "--to", "canary", "--json")).stdout)
    assert facts["environment"] == {
        "name": "canary",
        "previous": "staging",
        "previous_override_expired": None,
    }
    assert facts["signatures"]["registry_signed"] is True
    assert facts["signatures"]["verified"] is False
    assert facts["provenance"]["present"] is False and facts["datasets"] is None
    text = _ok(run("bob", "facts", "models:/m/1", "--to", "canary")).stdout
    assert "models:/m/1 → canary" in text and "trusted keys: none" in text
    assert json.loads(_ok(run("alice", "audit", "log", "--json")).stdout) == before  # no decision
    assert_clean_error(run("bob", "facts", "models:/m/1", "--to", "qa"), 2, "unknown environment")
    assert_clean_error(run("bob", "facts", "models:/m/9", "--to", "staging"), 2, "m")
