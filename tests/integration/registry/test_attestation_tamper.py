"""Forged attestations inserted with SQL behind modelward's back, on SQLite and PostgreSQL, through
the real console script: an unsigned or foreign-signed "scan: clean" no longer turns a staging
deny into an allow, a registry-signed statement about other bytes is refused, `show` marks each
attestation verified or not with the reason, `facts` lists them as evidence problems, and
`show --attestations --out` exports only the verified envelopes."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tests.unit.registry.bundles import make_bundle

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.services.ingest import SCAN_PREDICATE_TYPE
from modelward.signing.keys import Signer, generate_private_key, load_private_key

from .conftest import CliRegistry

SCAN_ONLY = """
rules:
  - id: scan-clean
    expression: facts.scan.verdict == 'clean'
    message: the bundle must scan clean
"""
CLEAN = {"verdict": "clean", "summary": {"findings": 0, "files": 3}}


def _scan_statement(root_digest: str) -> bytes:
    return Statement(
        subjects=(Subject.of("llama", sha256=root_digest),),
        predicate_type=SCAN_PREDICATE_TYPE,
        predicate=CLEAN,
    ).to_bytes()


def _insert(reg: CliRegistry, version_id: int, envelope: Envelope) -> None:
    document = json.dumps(envelope.to_dict(), sort_keys=True)
    reg.sql(
        "INSERT INTO attestations (version_id, kind, document, digest, created_at, created_by) "
        "VALUES (:v, 'scan', :d, :h, '2026-01-01T00:00:00.000000Z', 'alice')",
        {"v": version_id, "d": document, "h": hashlib.sha256(document.encode()).hexdigest()},
    )


def test_forged_scan_attestations_do_not_turn_deny_into_allow(
    cli_registry: CliRegistry, tmp_path: Path
) -> None:
    reg = cli_registry
    with reg.service() as service:
        record = service.push(make_bundle(tmp_path / "one", seed=1), "llama").version
    # every push is scanned: take the genuine scan away, so only forgeries could supply one
    reg.sql("DELETE FROM attestations WHERE kind = 'scan' AND version_id = :v", {"v": record.id})
    policy = tmp_path / "scan-only.yaml"
    policy.write_text(SCAN_ONLY)
    reg.ok("policy", "set", "staging", str(policy))
    denied = reg.run("promote", "models:/llama/1", "--to", "staging")
    assert denied.returncode == 1 and "scan-clean" in denied.stdout

    payload = _scan_statement(record.root_digest)
    mallory = Signer(generate_private_key("ed25519"))
    registry_key = Signer(load_private_key(reg.home / "keys" / "registry.key"))
    unsigned = Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, lambda _: b"\0" * 64)
    foreign = Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, mallory.sign, mallory.keyid)
    other_bytes = Envelope.sign(
        IN_TOTO_PAYLOAD_TYPE, _scan_statement("cd" * 32), registry_key.sign, registry_key.keyid
    )
    for envelope in (unsigned, foreign, other_bytes):
        _insert(reg, record.id, envelope)
        still = reg.run("promote", "models:/llama/1", "--to", "staging")
        assert still.returncode == 1, still.stdout
        assert "scan-clean" in still.stdout

    shown = reg.json("show", "models:/llama/1")
    scans = [a for a in shown["attestations"] if a["kind"] == "scan"]
    assert [a["verified"] for a in scans] == [False, False, False]
    assert "does not verify with the registry key" in scans[0]["problem"]
    assert "does not verify with the registry key" in scans[1]["problem"]
    assert f"about sha256:{'cd' * 32}" in scans[2]["problem"]
    text = reg.ok("show", "models:/llama/1").stdout
    assert text.count("UNVERIFIED") == 3

    facts = reg.json("facts", "models:/llama/1", "--to", "staging")
    assert facts["scan"] is None
    assert len(facts["evidence_problems"]) == 3

    out = tmp_path / "exported"
    exported = reg.json("show", "models:/llama/1", "--attestations", "--out", str(out))
    assert [w["kind"] for w in exported["written"]] == ["registry-signature"]
    assert len(exported["skipped"]) == 3
    assert sorted(p.name for p in out.iterdir()) == [exported["written"][0]["file"]]

    audit = reg.run("audit", "verify")
    assert audit.returncode == 1, audit.stdout
    assert "attestation" in audit.stdout and "does not verify with the registry key" in audit.stdout

    # the control: what the registry key really signed about these bytes is used
    _insert(
        reg,
        record.id,
        Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, registry_key.sign, registry_key.keyid),
    )
    allowed = reg.run("promote", "models:/llama/1", "--to", "staging")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
