"""Rollback and drills after tampering, through the CLI on SQLite and PostgreSQL: a corrupted blob
or a replaced registry signature makes rollback refuse with reasons (exit 1, JSON error), changes
no release, and a drill refused for it is recorded as the latest, failed drill."""

from __future__ import annotations

import json
from pathlib import Path

from tests.unit.registry.bundles import make_bundle

from .conftest import CliRegistry

ALLOW = "rules:\n  - id: always\n    expression: 'true'\n    message: anything goes\n"


def _two_releases(reg: CliRegistry, tmp_path: Path) -> None:
    with reg.service() as service:
        service.push(make_bundle(tmp_path / "v1", seed=1), "llama")
        service.push(make_bundle(tmp_path / "v2", seed=2), "llama")
    policy = tmp_path / "allow.yaml"
    policy.write_text(ALLOW)
    reg.ok("policy", "set", "staging", str(policy))
    reg.ok("promote", "models:/llama/1", "--to", "staging")
    reg.ok("promote", "models:/llama/2", "--to", "staging")


def _current(reg: CliRegistry) -> str:
    rows = reg.json("releases", "staging", "--model", "llama")
    return str(next(r["release_id"] for r in rows if r["current"]))


def test_rollback_and_drill_refuse_a_corrupted_state(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    _two_releases(reg, tmp_path)
    assert reg.json("rollback", "llama", "--env", "staging", "--drill")["passed"]
    current = _current(reg)
    with reg.service() as service:
        manifest = service.resolve("models:/llama/1").manifest()
    weights = next(f for f in manifest.files if f.name.endswith(".safetensors"))
    reg.tamper_blob(weights.digest)

    refused = reg.run("rollback", "llama", "--env", "staging", "--json")
    assert refused.returncode == 1, refused.stderr
    error = json.loads(refused.stdout)["error"]
    assert error["type"] == "DeniedError"
    assert any(weights.name in r and "do not match" in r for r in error["reasons"])
    assert weights.name in refused.stderr
    assert _current(reg) == current

    drill = reg.run("rollback", "llama", "--env", "staging", "--drill")
    assert drill.returncode == 1 and "FAILED" in drill.stderr
    drills = [e for e in reg.audit_log() if e.action == "drill.record"]
    assert [e.details["passed"] for e in drills] == [True, False]
    assert drills[-1].details["problems"]
    assert "rollback.refused" in [e.action for e in reg.audit_log()]
    assert _current(reg) == current


def test_rollback_refuses_a_version_whose_signature_was_swapped_in_the_database(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    _two_releases(reg, tmp_path)
    # the attacker copies version 2's registry signature onto version 1
    rows = reg.sql(
        "SELECT v.number, a.document FROM attestations a JOIN versions v ON v.id = a.version_id "
        "WHERE a.kind = 'registry-signature' ORDER BY v.number"
    )
    other = rows[1][1]
    reg.sql(
        "UPDATE attestations SET document = :doc WHERE kind = 'registry-signature' AND "
        "version_id = (SELECT id FROM versions WHERE number = 1)",
        {"doc": other},
    )
    refused = reg.run("rollback", "llama", "--env", "staging", "--json")
    assert refused.returncode == 1, refused.stderr
    reasons = json.loads(refused.stdout)["error"]["reasons"]
    assert any("registry signature covers" in r for r in reasons), reasons
