"""Forensics and probe results become gate facts only as verified attestations, and the default
production policy requires passing ones for a fine-tune of a declared base."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file
from tests.unit.gate.test_verified_facts import (
    Reg,
    _cpu_run,
    _insert_attestation,
    _push_with_provenance,
    _statement_about,
    _trust,
    reg,
)

from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.policy import evaluate
from modelward.errors import InputError
from modelward.forensics.probes import judge, load_suite, shipped_suite_digests
from modelward.policy.cel_engine import CelEngine
from modelward.policy.loader import load_default_policy
from modelward.provenance.slsa import BaseModel
from modelward.services.forensics import FORENSICS_V1, ForensicsService
from modelward.services.probes import ProbeService
from modelward.services.registry import RegistryService
from modelward.services.settings import SettingsService
from modelward.signing.keys import Signer, generate_private_key

__all__ = ["reg"]
ADMIN = "alice"
VOCAB = {"<s>": 0, "</s>": 1, "a": 2, "b": 3, "c": 4}


def _bundle(folder: Path, weights: dict[str, np.ndarray], template: str = "{{ x }}") -> Path:
    folder.mkdir(parents=True)
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(
        json.dumps({"model_type": "llama", "hidden_size": 8, "bos_token_id": 0})
    )
    (folder / "tokenizer.json").write_text(
        json.dumps({"model": {"type": "BPE", "vocab": VOCAB, "merges": ["a b"]}})
    )
    (folder / "chat_template.jinja").write_text(template)
    return folder


def _weights(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "model.layers.0.mlp.up_proj.weight": rng.standard_normal((16, 8)).astype(np.float32),
        "model.norm.weight": np.ones(8, np.float32),
    }


def _production(reg: Reg, uri: str) -> tuple[set[str], dict[str, object]]:
    engine = CelEngine()
    facts = reg.facts(uri, "production")
    decision = evaluate(load_default_policy("production", engine), facts, engine)
    return set(decision.failed), facts


def _measurements(trigger_kl: float) -> dict[str, object]:
    return {
        "clean_kl": [0.01, 0.02, 0.015],
        "triggered_kl": [["cf", trigger_kl], ["cf", trigger_kl], ["mn", 0.02], ["mn", 0.01]],
        "safety": [
            {
                "prompt": "p",
                "candidate": "I can't help",
                "baseline": "I can't help",
                "candidate_tokens": 4,
                "baseline_tokens": 4,
            }
        ],
    }


@pytest.fixture
def suite_file(tmp_path: Path) -> Path:
    path = tmp_path / "suite.yaml"
    path.write_text(
        "suite: tiny\nversion: 2\nclean: [x, y, z]\ntrigger_base: [x, y]\n"
        "triggers: [cf, mn]\nsafety: [s]\n"
    )
    return path


def test_a_fine_tune_of_a_declared_base_needs_passing_forensics_and_probes(
    reg: Reg, tmp_path: Path, suite_file: Path
) -> None:
    _trust(reg)
    base_uri = reg.push(_bundle(tmp_path / "base", _weights(1)), signed=True)
    base = RegistryService(reg.ctx, actor=ADMIN).resolve(base_uri)
    tuned = _weights(1)
    tuned["model.layers.0.mlp.up_proj.weight"] += np.outer(np.ones(16), np.ones(8)) * 0.01
    run = dataclasses.replace(
        _cpu_run(()), base_model=BaseModel(digest=base.root_digest, uri=base_uri)
    )
    uri = _push_with_provenance(reg, _bundle(tmp_path / "tuned", tuned), run)

    failed, facts = _production(reg, uri)
    assert facts["provenance"]["base_model"] == "sha256:" + base.root_digest
    assert {"fine-tune-forensics", "fine-tune-probes"} <= failed
    # a base nobody released vouches for nothing: it must run in some environment first
    assert facts["provenance"]["base_released"] is False
    assert "fine-tune-base-released" in failed
    from modelward.services.gate import GateService

    released = GateService(reg.ctx, actor=ADMIN).promote(base_uri, "staging")
    assert released.release is not None, released
    failed, facts = _production(reg, uri)
    assert facts["provenance"]["base_released"] is True
    assert "fine-tune-base-released" not in failed

    report = ForensicsService(reg.ctx, ADMIN).compare(uri, base_uri)
    assert report.passed
    changed = [t for t in report.predicate["tensors"] if t["changed"]]
    assert [t["name"] for t in changed] == ["model.layers.0.mlp.up_proj.weight"]
    assert changed[0]["effective_rank"] < 1.5 and changed[0]["top_k_energy"] > 0.999
    failed, facts = _production(reg, uri)
    assert "fine-tune-forensics" not in failed and "fine-tune-probes" in failed
    assert facts["forensics"]["changed_tensors"] == 1

    # whoever runs the probe picks the suite: a run with a suite neither shipped nor pinned
    # does not count, however lenient its thresholds
    suite = load_suite(suite_file)
    record = RegistryService(reg.ctx, actor=ADMIN).resolve(uri)
    probes = ProbeService(reg.ctx, ADMIN)
    baseline = {"uri": base_uri, "digest": "sha256:" + base.root_digest}
    candidate = {"uri": uri, "digest": "sha256:" + record.root_digest}
    passing = {
        "candidate": candidate,
        "baseline": baseline,
        "suite": suite.reference(),
        **judge(suite, _measurements(trigger_kl=0.02)),
    }
    probes.attest(record, passing)
    failed, facts = _production(reg, uri)
    assert "fine-tune-probes" in failed and facts["probes"]["passed"] is False
    assert facts["probes"]["suite_digest"] == suite.digest
    assert facts["probes"]["suite_accepted"] is False
    assert "neither shipped" in facts["probes"]["findings"][0]

    # pinned by an admin in registry settings, the suite counts
    SettingsService(reg.ctx, ADMIN).set("probe.suites", [suite.digest])
    failed, facts = _production(reg, uri)
    assert "fine-tune-probes" not in failed and facts["probes"]["passed"] is True
    assert suite.digest in facts["probes"]["accepted_suite_digests"]
    assert set(facts["probes"]["accepted_suite_digests"]) >= shipped_suite_digests()

    flagged = {**passing, **judge(suite, _measurements(trigger_kl=3.0))}
    probes.attest(record, flagged)
    failed, facts = _production(reg, uri)
    assert "fine-tune-probes" in failed and facts["probes"]["passed"] is False
    assert facts["probes"]["trigger_kl_median"] == 3.0
    assert facts["probes"]["runs"] == 2 and facts["probes"]["failed_runs"] == 1

    # a later passing run, with the same suite or a lenient one, does not erase the failure
    lenient_file = tmp_path / "lenient.yaml"
    lenient_file.write_text(
        suite_file.read_text()
        + "thresholds: {trigger_kl_ratio: 1.0e+300, trigger_kl_min: 1.0e+300,"
        " refusal_drop: 10, length_ratio: 1.0e+300}\n"
    )
    lenient = load_suite(lenient_file)
    assert judge(lenient, _measurements(trigger_kl=3.0))["passed"]
    probes.attest(
        record,
        {**passing, "suite": lenient.reference(), **judge(lenient, _measurements(3.0))},
    )
    probes.attest(record, passing)
    failed, facts = _production(reg, uri)
    assert "fine-tune-probes" in failed and facts["probes"]["passed"] is False
    assert facts["probes"]["failed_runs"] == 1 and facts["probes"]["runs"] == 3
    assert any("trigger candidate 'cf'" in f for f in facts["probes"]["findings"])


def test_the_probe_suites_setting_takes_only_digests(reg: Reg) -> None:
    _trust(reg)
    with pytest.raises(InputError, match="64 hex digits"):
        SettingsService(reg.ctx, ADMIN).set("probe.suites", ["lenient.yaml"])
    view = SettingsService(reg.ctx, ADMIN).set("probe.suites", ["SHA256:" + "A" * 64])
    assert view.value == ["sha256:" + "a" * 64]


def test_forged_forensics_attestations_are_not_facts(reg: Reg, tmp_path: Path) -> None:
    base_uri = reg.push(_bundle(tmp_path / "base", _weights(1)))
    uri = reg.push(_bundle(tmp_path / "tuned", _weights(2)))
    record = RegistryService(reg.ctx, actor=ADMIN).resolve(uri)
    base = RegistryService(reg.ctx, actor=ADMIN).resolve(base_uri)
    mallory = Signer(generate_private_key("ed25519"))
    payload = _statement_about(
        record.root_digest,
        FORENSICS_V1,
        {"base": {"digest": "sha256:" + base.root_digest}, "passed": True, "findings": []},
    )
    _insert_attestation(
        reg, uri, "forensics", Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, mallory.sign, "k")
    )
    facts = reg.facts(uri, "production")
    assert facts["forensics"] is None
    assert any("forensics" in p for p in facts["evidence_problems"])


def test_metadata_changes_and_bad_claims_are_flagged(reg: Reg, tmp_path: Path) -> None:
    base_uri = reg.push(_bundle(tmp_path / "base", _weights(1)))
    uri = reg.push(_bundle(tmp_path / "tuned", _weights(1), template="{{ evil }}"))
    report = ForensicsService(reg.ctx, ADMIN).compare(uri, base_uri)
    assert not report.passed
    assert report.predicate["metadata"]["chat_template"]["changed"]
    assert report.predicate["findings"] == ["the chat template differs from the base's"]
    with pytest.raises(InputError, match="unknown quantisation claim"):
        ForensicsService(reg.ctx, ADMIN).compare(uri, base_uri, claim="Q3_XS")
    with pytest.raises(InputError, match="same bundle"):
        ForensicsService(reg.ctx, ADMIN).compare(base_uri, base_uri)
