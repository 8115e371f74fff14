"""Facts that mean what they say, on a real (temporary, SQLite) registry in-process: attestations
count only when verified, trusted keys and thresholds are ledgered settings an attacker cannot
edit with SQL, dataset eligibility and configurable provenance completeness are facts, and the
default policies deny on them."""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from tests.unit.registry.bundles import make_bundle

from modelward.core.anchors import anchors_in
from modelward.core.dsse import IN_TOTO_PAYLOAD_TYPE, Envelope
from modelward.core.intoto import Statement, Subject
from modelward.core.manifest import Manifest, Serialization
from modelward.core.policy import evaluate
from modelward.errors import InputError, PermissionDeniedError, VerificationError
from modelward.policy.cel_engine import CelEngine
from modelward.policy.loader import load_default_policy
from modelward.provenance.evaluation import TEST_RESULT_V01, EvaluationCheck, EvaluationResults
from modelward.provenance.slsa import (
    DatasetUse,
    EnvironmentInfo,
    SourceInfo,
    TrainingRun,
    provenance_statement,
    sign_provenance,
)
from modelward.services.bundle_signing import sign_bundle
from modelward.services.context import RegistryContext, open_registry
from modelward.services.datasets import DatasetService
from modelward.services.gate import GateService
from modelward.services.ingest import SCAN_PREDICATE_TYPE
from modelward.services.provenance import ProvenanceService
from modelward.services.provenance_requirements import (
    DEFAULT_REQUIRED_FIELDS,
    ProvenanceRequirementsService,
)
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.settings import verified_setting
from modelward.services.thresholds import ThresholdService
from modelward.services.trusted_keys import TrustedKeyService
from modelward.services.users import UserService
from modelward.signing.keys import Signer, Verifier, generate_private_key, public_key_pem
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.model_files import list_model_files

ADMIN = "alice"


@dataclass
class Reg:
    home: Path
    ctx: RegistryContext
    uploader: Signer

    def sql(self, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.home / "registry.db")
        try:
            rows = conn.execute(statement, params).fetchall()
            conn.commit()
            return rows
        finally:
            conn.close()

    def facts(self, uri: str, env: str = "staging") -> dict[str, Any]:
        return GateService(self.ctx, actor=ADMIN).facts(uri, env)

    def push(self, folder: Path, *, signed: bool = False, **kwargs: Any) -> str:
        extra: dict[str, Any] = {}
        if signed:
            signature = folder.parent / f"{folder.name}.sig"
            sign_bundle(folder, self.uploader, signature_path=signature)
            extra = {"signature_path": signature, "public_key": Verifier(self.uploader.public_key)}
        result = RegistryService(self.ctx, actor="bob").push(folder, "llama", **extra, **kwargs)
        return result.version.uri


@pytest.fixture
def reg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Reg]:
    home = tmp_path / "home"
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("MODELWARD_ACTOR", ADMIN)
    initialize_registry(home)
    ctx = open_registry(home)
    users = UserService(ctx, actor=ADMIN)
    for name, role in (("bob", "trainer"), ("rev", "reviewer"), ("rita", "releaser")):
        users.add(name, role)
    try:
        yield Reg(home, ctx, Signer(generate_private_key("ecdsa-p256")))
    finally:
        ctx.close()


def _trust(reg: Reg) -> str:
    pem = public_key_pem(reg.uploader.public_key)
    return TrustedKeyService(reg.ctx, actor=ADMIN).trust(pem, "bob-laptop").key_id


def _statement_about(root_digest: str, predicate_type: str, predicate: dict[str, Any]) -> bytes:
    return Statement(
        subjects=(Subject.of("llama", sha256=root_digest),),
        predicate_type=predicate_type,
        predicate=predicate,
    ).to_bytes()


def _insert_attestation(reg: Reg, uri: str, kind: str, envelope: Envelope) -> None:
    import hashlib

    document = json.dumps(envelope.to_dict(), sort_keys=True)
    [(version_id,)] = reg.sql(
        "SELECT v.id FROM versions v JOIN models m ON m.id = v.model_id WHERE m.name = ? "
        "AND v.number = ?",
        ("llama", int(uri.rsplit("/", 1)[1])),
    )
    reg.sql(
        "INSERT INTO attestations (version_id, kind, document, digest, created_at, created_by) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            version_id,
            kind,
            document,
            hashlib.sha256(document.encode()).hexdigest(),
            "2026-01-01T00:00:00.000000Z",
            "bob",
        ),
    )


CLEAN_SCAN = {"verdict": "clean", "summary": {"findings": 0}}


def _staging(reg: Reg, uri: str) -> Any:
    policy = load_default_policy("staging", CelEngine())
    return evaluate(policy, reg.facts(uri), CelEngine())


# -- 1: attestations are verified before they become facts ------------------------------------


def test_forged_scan_attestations_are_reported_and_ignored(reg: Reg, tmp_path: Path) -> None:
    _trust(reg)
    uri = reg.push(make_bundle(tmp_path / "b", seed=1), signed=True)
    record = RegistryService(reg.ctx, actor=ADMIN).resolve(uri)
    assert reg.facts(uri)["scan"]["verdict"] == "clean"  # every push is scanned
    # take the genuine scan away, so only forgeries could make the scan fact "clean" again
    with reg.ctx.database.transaction() as conn:
        conn.execute(text("DELETE FROM attestations WHERE kind = 'scan'"))
    assert reg.facts(uri)["scan"] is None
    assert "scan-clean" in _staging(reg, uri).failed

    payload = _statement_about(record.root_digest, SCAN_PREDICATE_TYPE, CLEAN_SCAN)
    mallory = Signer(generate_private_key("ed25519"))
    other = "ab" * 32
    forgeries = [
        # signed by a key that is not the registry's
        Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, mallory.sign, mallory.keyid),
        # a garbage signature claiming the registry's key id
        Envelope(
            IN_TOTO_PAYLOAD_TYPE,
            payload,
            Envelope.sign(
                IN_TOTO_PAYLOAD_TYPE, payload, mallory.sign, reg.ctx.signer.keyid
            ).signatures,
        ),
        # genuinely signed by the registry, but about other bytes
        Envelope.sign(
            IN_TOTO_PAYLOAD_TYPE,
            _statement_about(other, SCAN_PREDICATE_TYPE, CLEAN_SCAN),
            reg.ctx.signer.sign,
            reg.ctx.signer.keyid,
        ),
        # genuinely signed, right subject, but an evaluation relabelled as a scan
        Envelope.sign(
            IN_TOTO_PAYLOAD_TYPE,
            _statement_about(record.root_digest, TEST_RESULT_V01, CLEAN_SCAN),
            reg.ctx.signer.sign,
            reg.ctx.signer.keyid,
        ),
    ]
    for envelope in forgeries:
        _insert_attestation(reg, uri, "scan", envelope)
    facts = reg.facts(uri)
    assert facts["scan"] is None
    assert "scan-clean" in _staging(reg, uri).failed
    problems = facts["evidence_problems"]
    assert len(problems) == 4
    assert sum("does not verify with the registry key" in p for p in problems) == 2
    assert any(f"about sha256:{other}" in p for p in problems)
    assert any("predicate type" in p for p in problems)

    shown = RegistryService(reg.ctx, actor=ADMIN).show(uri)["attestations"]
    scans = [a for a in shown if a["kind"] == "scan"]
    assert [a["verified"] for a in scans] == [False] * 4
    assert all(a["problem"] and "statement" not in a for a in scans)
    assert all(a["verified"] for a in shown if a["kind"] != "scan")

    # the control: a statement the registry really signed about these bytes is used
    _insert_attestation(
        reg,
        uri,
        "scan",
        Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, reg.ctx.signer.sign, reg.ctx.signer.keyid),
    )
    assert reg.facts(uri)["scan"]["verdict"] == "clean"
    assert _staging(reg, uri).allowed


def test_an_edited_attestation_document_is_refused(reg: Reg, tmp_path: Path) -> None:
    uri = reg.push(make_bundle(tmp_path / "b", seed=1))
    reg.sql("UPDATE attestations SET document = replace(document, '\"', ' \"') "
            "WHERE kind = 'registry-signature'")  # fmt: skip
    facts = reg.facts(uri)
    assert facts["signatures"]["registry_signed"] is False
    assert any("recorded digest" in p for p in facts["evidence_problems"])


def test_show_attestations_out_exports_only_verified_envelopes(reg: Reg, tmp_path: Path) -> None:
    from modelward.services.attestation_export import AttestationExportService

    uri = reg.push(make_bundle(tmp_path / "b", seed=1))
    record = RegistryService(reg.ctx, actor=ADMIN).resolve(uri)
    mallory = Signer(generate_private_key("ed25519"))
    payload = _statement_about(record.root_digest, SCAN_PREDICATE_TYPE, CLEAN_SCAN)
    _insert_attestation(
        reg, uri, "scan", Envelope.sign(IN_TOTO_PAYLOAD_TYPE, payload, mallory.sign)
    )
    out = tmp_path / "out"
    result = AttestationExportService(reg.ctx, actor="rita").export(uri, out)
    # the push's own scan is genuine; the inserted one is not
    assert [w["kind"] for w in result.written] == ["registry-signature", "scan"]
    assert [s["kind"] for s in result.skipped] == ["scan"]
    written = sorted(out.iterdir())
    assert len(written) == 2
    scan = Envelope.from_dict(json.loads(written[1].read_text()))
    assert Verifier(reg.ctx.signer.public_key).is_valid(scan.signatures[0].sig, scan.pae())
    with pytest.raises(InputError, match="not an empty folder"):
        AttestationExportService(reg.ctx, actor="rita").export(uri, out)


# -- 13: signatures by trusted keys other than the registry's ---------------------------------


def test_signature_verified_needs_a_trusted_key_other_than_the_registrys(
    reg: Reg, tmp_path: Path
) -> None:
    uri = reg.push(make_bundle(tmp_path / "a", seed=1), signed=True)
    facts = reg.facts(uri)
    # the registry's own signature verifies, but it is not a trusted uploader's
    assert facts["signatures"]["registry_signed"] is True
    assert facts["signatures"]["verified"] is False and facts["signatures"]["key_ids"] == []
    assert any("not trusted" in u for u in facts["signatures"]["unverified"])
    assert "signature-verified" in _staging(reg, uri).failed

    key_id = _trust(reg)
    facts = reg.facts(uri)
    assert facts["signatures"] == {
        "verified": True,
        "key_ids": [key_id],
        "registry_signed": True,
        "unverified": [],
    }
    assert "signature-verified" not in _staging(reg, uri).failed

    removed = TrustedKeyService(reg.ctx, actor=ADMIN).untrust("bob-laptop")
    assert removed.key_id == key_id
    assert reg.facts(uri)["signatures"]["verified"] is False


def test_only_an_admin_trusts_keys_and_never_the_registry_key(reg: Reg) -> None:
    pem = public_key_pem(reg.uploader.public_key)
    with pytest.raises(PermissionDeniedError, match="may not change the setting"):
        TrustedKeyService(reg.ctx, actor="bob").trust(pem, "mine")
    with pytest.raises(InputError, match="registry's own key"):
        TrustedKeyService(reg.ctx, actor=ADMIN).trust(
            public_key_pem(reg.ctx.signer.public_key), "registry"
        )
    _trust(reg)
    with pytest.raises(InputError, match="already trusted"):
        TrustedKeyService(reg.ctx, actor=ADMIN).trust(pem, "again")


def test_settings_writes_are_ledgered_and_anchored(reg: Reg) -> None:
    _trust(reg)
    [(row_id, seq)] = reg.sql("SELECT id, ledger_seq FROM registry_settings")
    with reg.ctx.database.read() as conn:
        event = LedgerRepository(conn).event(seq)
    assert event.action == "settings.set" and event.subject == "setting:trusted_keys"
    [anchor] = anchors_in(event.details)
    assert (anchor.table, anchor.key) == ("registry_settings", str(row_id))
    with reg.ctx.database.read() as conn:
        record = verified_setting(conn, "trusted_keys")
    assert record is not None and record.id == row_id and record.ledger_seq == seq


@pytest.mark.parametrize(
    "attack",
    [
        "UPDATE registry_settings SET value = replace(value, 'bob-laptop', 'bob-laptop2')",
        "INSERT INTO registry_settings (key, value, created_at, created_by, ledger_seq) "
        "SELECT key, value, created_at, 'mallory', ledger_seq FROM registry_settings",
        "DELETE FROM registry_settings",
    ],
    ids=["edited", "inserted", "deleted"],
)
def test_a_setting_changed_with_sql_is_not_trusted(reg: Reg, tmp_path: Path, attack: str) -> None:
    uri = reg.push(make_bundle(tmp_path / "a", seed=1), signed=True)
    _trust(reg)
    assert reg.facts(uri)["signatures"]["verified"] is True
    reg.sql(attack)
    facts = reg.facts(uri)
    assert facts["signatures"]["verified"] is False
    assert any("trusted keys are not used" in p for p in facts["evidence_problems"])
    with (
        pytest.raises(VerificationError, match=r"setting '?trusted_keys'?"),
        reg.ctx.database.read() as conn,
    ):
        verified_setting(conn, "trusted_keys")


# -- 13: thresholds are the reviewer's -------------------------------------------------------


def _attach_evaluation(reg: Reg, uri: str, configuration: dict[str, Any], **metrics: float) -> None:
    from modelward.services.evidence import EvidenceService

    results = EvaluationResults(
        metrics=metrics, tests=(EvaluationCheck("loads", True),), configuration=configuration
    )
    EvidenceService(reg.ctx, actor="bob").attach_evaluation(uri, "quality", results)


def test_trainer_declared_direction_and_threshold_are_ignored(reg: Reg, tmp_path: Path) -> None:
    uri = reg.push(make_bundle(tmp_path / "a", seed=1))
    declared = {"thresholds": {"accuracy": 0.05}, "lower_is_better": ["accuracy"]}
    _attach_evaluation(reg, uri, declared, accuracy=0.10)
    metric = reg.facts(uri, "production")["evaluations"]["metrics"]["accuracy"]
    assert metric == {
        "value": 0.10,
        "threshold": None,
        "higher_is_better": True,
        "suite": "quality",
        "declared": {"threshold": 0.05, "higher_is_better": False},
    }
    assert reg.facts(uri, "production")["evaluations"]["unthresholded"] == ["accuracy"]

    with pytest.raises(PermissionDeniedError):
        ThresholdService(reg.ctx, actor="bob").set_metric("quality", "accuracy", minimum=0.85)
    ThresholdService(reg.ctx, actor="rev").set_metric("quality", "accuracy", minimum=0.85)
    facts = reg.facts(uri, "production")
    metric = facts["evaluations"]["metrics"]["accuracy"]
    assert (metric["threshold"], metric["higher_is_better"]) == (0.85, True)
    assert facts["evaluations"]["unthresholded"] == []
    engine = CelEngine()
    decision = evaluate(load_default_policy("production", engine), facts, engine)
    assert "metrics-meet-thresholds" in decision.failed
    # and the regression check against 0.90 in production uses the reviewer's direction
    current = {**facts["evaluations"]["metrics"]["accuracy"], "value": 0.90}
    facts["current"] = {
        "uri": "models:/llama/0",
        "version": 1,
        "digest": "sha256:" + "0" * 64,
        "evaluations": {"metrics": {"accuracy": current}, "unthresholded": []},
    }
    decision = evaluate(load_default_policy("production", engine), facts, engine)
    assert "no-regression" in decision.failed


def test_thresholds_by_direction_file_and_show(reg: Reg) -> None:
    service = ThresholdService(reg.ctx, actor="rev")
    service.set_suite("safety", {"toxicity": {"max": 0.02}, "refusals": {"direction": "lower"}})
    [suite] = service.show("safety")
    assert suite.to_dict()["metrics"] == {
        "refusals": {"direction": "lower", "threshold": None},
        "toxicity": {"direction": "lower", "threshold": 0.02},
    }
    service.unset_metric("safety", "refusals")
    assert set(service.show("safety")[0].metrics) == {"toxicity"}
    with pytest.raises(InputError, match="either min or max"):
        service.set_suite("safety", {"toxicity": {"min": 0.1, "max": 0.2}})
    with pytest.raises(InputError, match="exactly one"):
        service.set_metric("safety", "x", minimum=1.0, maximum=2.0)
    with pytest.raises(InputError, match="finite"):
        service.set_metric("safety", "x", minimum=float("nan"))


# -- 13: provenance completeness and dataset eligibility ---------------------------------------


def _cpu_run(datasets: tuple[DatasetUse, ...]) -> TrainingRun:
    start = dt.datetime(2025, 3, 1, 12, 0, tzinfo=dt.UTC)
    return TrainingRun(
        builder_id="https://modelward.dev/builders/local-training/v1",
        invocation_id="run-7",
        started_on=start,
        finished_on=start + dt.timedelta(hours=1),
        command=("python", "train.py"),
        hyperparameters={"lr": 0.001},
        seeds={"python": 1},
        datasets=datasets,
        base_model=None,  # trained from scratch
        source=SourceInfo("https://git.example.org/ml/train.git", "c" * 40, dirty=False),
        environment=EnvironmentInfo("3.11.7", "sha256:" + "d" * 64, "Linux-x86_64", None),
    )


def _push_with_provenance(reg: Reg, folder: Path, run: TrainingRun) -> str:
    files = list_model_files(folder)
    from modelward.storage.model_files import hash_files

    root = Manifest("bundle", tuple(hash_files(files)), Serialization()).root_digest
    trainer = reg.uploader
    envelope = sign_provenance(provenance_statement(run, root, "llama"), trainer)
    path = folder.parent / f"{folder.name}.provenance.json"
    path.write_text(json.dumps(envelope.to_dict()))
    hook = ProvenanceService(reg.ctx, actor="bob").push_hook(path)
    return reg.push(folder, signed=True, provenance=hook)


def _dataset(reg: Reg, tmp_path: Path) -> DatasetUse:
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a"}\n')
    added = DatasetService(reg.ctx, actor="bob").add(
        folder,
        name="chats",
        license_id="CC-BY-4.0",
        source="https://example.org",
        consent="granted",
    )
    return DatasetUse(added.record.uri, added.record.manifest_digest)


def test_cpu_trained_from_scratch_provenance_is_complete_by_default(
    reg: Reg, tmp_path: Path
) -> None:
    _trust(reg)
    use = _dataset(reg, tmp_path)
    uri = _push_with_provenance(reg, make_bundle(tmp_path / "a", seed=1), _cpu_run((use,)))
    facts = reg.facts(uri, "canary")
    assert facts["provenance"] == {
        "present": True,
        "complete": True,
        "missing": [],
        "required": sorted(DEFAULT_REQUIRED_FIELDS),
        "base_model": None,  # trained from scratch: no base, so no forensics are required
        "base_released": None,
    }
    assert facts["datasets"] == {"uris": [use.uri], "eligible": True, "ineligible": {}}
    engine = CelEngine()
    decision = evaluate(load_default_policy("canary", engine), facts, engine)
    assert "provenance-complete" not in decision.failed
    assert "datasets-eligible" not in decision.failed

    # an admin may require the GPU and a base model; the deny then names both fields
    with pytest.raises(PermissionDeniedError):
        ProvenanceRequirementsService(reg.ctx, actor="rev").set(["gpu"])
    ProvenanceRequirementsService(reg.ctx, actor=ADMIN).set(
        [*DEFAULT_REQUIRED_FIELDS, "gpu", "base_model"]
    )
    facts = reg.facts(uri, "canary")
    assert facts["provenance"]["missing"] == ["base_model", "gpu"]
    decision = evaluate(load_default_policy("canary", engine), facts, engine)
    [result] = [r for r in decision.results if r.rule_id == "provenance-complete"]
    assert not result.passed
    assert 'provenance.missing = ["base_model", "gpu"]' in result.detail
    with pytest.raises(InputError, match="unknown provenance field"):
        ProvenanceRequirementsService(reg.ctx, actor=ADMIN).set(["gpus"])


@pytest.mark.parametrize("environment", ["canary", "production"])
def test_withdrawn_consent_is_a_fact_the_default_policies_deny_on(
    reg: Reg, tmp_path: Path, environment: str
) -> None:
    _trust(reg)
    use = _dataset(reg, tmp_path)
    uri = _push_with_provenance(reg, make_bundle(tmp_path / "a", seed=1), _cpu_run((use,)))
    DatasetService(reg.ctx, actor=ADMIN).set_governance(use.uri, consent="withdrawn")
    facts = reg.facts(uri, environment)
    assert facts["datasets"]["eligible"] is False
    assert use.uri in facts["datasets"]["ineligible"]
    engine = CelEngine()
    decision = evaluate(load_default_policy(environment, engine), facts, engine)
    assert "datasets-eligible" in decision.failed


def test_provenance_that_does_not_verify_is_absent(reg: Reg, tmp_path: Path) -> None:
    import hashlib

    _trust(reg)
    use = _dataset(reg, tmp_path)
    uri = _push_with_provenance(reg, make_bundle(tmp_path / "a", seed=1), _cpu_run((use,)))
    assert reg.facts(uri, "canary")["provenance"]["present"] is True
    # an attacker replaces the statement with one naming no datasets, signed by their own key
    [(document,)] = reg.sql("SELECT document FROM attestations WHERE kind = 'provenance'")
    envelope = Envelope.from_dict(json.loads(document))
    statement = json.loads(envelope.payload)
    statement["predicate"]["buildDefinition"]["resolvedDependencies"] = []
    mallory = Signer(generate_private_key("ed25519"))
    forged = Envelope.sign(
        IN_TOTO_PAYLOAD_TYPE, json.dumps(statement).encode(), mallory.sign, mallory.keyid
    )
    text = json.dumps(forged.to_dict(), sort_keys=True)
    reg.sql(
        "UPDATE attestations SET document = ?, digest = ? WHERE kind = 'provenance'",
        (text, hashlib.sha256(text.encode()).hexdigest()),
    )
    facts = reg.facts(uri, "canary")
    assert facts["provenance"]["present"] is False and facts["provenance"]["complete"] is False
    assert facts["datasets"] is None
    assert any("provenance" in p and "trusted key" in p for p in facts["evidence_problems"])
    lineage = ProvenanceService(reg.ctx, actor=ADMIN).lineage(uri)
    assert lineage["unverified"] and "datasets:/" not in json.dumps(lineage["tree"])


def test_deleting_a_consent_withdrawal_row_changes_nothing(reg: Reg, tmp_path: Path) -> None:
    _trust(reg)
    use = _dataset(reg, tmp_path)
    uri = _push_with_provenance(reg, make_bundle(tmp_path / "a", seed=1), _cpu_run((use,)))
    DatasetService(reg.ctx, actor=ADMIN).set_governance(use.uri, consent="withdrawn")
    # someone with write access to the database deletes the withdrawal
    reg.sql("DELETE FROM dataset_governance")
    facts = reg.facts(uri, "canary")
    assert facts["datasets"]["eligible"] is False
    assert use.uri in facts["datasets"]["ineligible"]
    shown = DatasetService(reg.ctx, actor=ADMIN).show(use.uri)
    assert shown["effective"]["consent"] == "withdrawn"
    from modelward.services.datasets import governance_state_check

    with reg.ctx.database.read() as conn:
        problems = governance_state_check(conn)
    assert any(use.uri in p and "governance rows differ" in p for p in problems)


def test_an_edited_dataset_manifest_is_not_trusted(reg: Reg, tmp_path: Path) -> None:
    _trust(reg)
    use = _dataset(reg, tmp_path)
    _push_with_provenance(reg, make_bundle(tmp_path / "a", seed=1), _cpu_run((use,)))
    DatasetService(reg.ctx, actor=ADMIN).set_governance(use.uri, consent="withdrawn")
    [(text,)] = reg.sql("SELECT manifest FROM dataset_versions")
    edited = json.loads(text)
    edited["license"] = "MIT" if edited["license"] != "MIT" else "Apache-2.0"
    reg.sql("UPDATE dataset_versions SET manifest = ?", (json.dumps(edited),))
    with pytest.raises(VerificationError, match="not trusted"):
        DatasetService(reg.ctx, actor=ADMIN).show(use.uri)


def test_a_governance_event_that_fails_its_seal_refuses(reg: Reg, tmp_path: Path) -> None:
    _trust(reg)
    use = _dataset(reg, tmp_path)
    DatasetService(reg.ctx, actor=ADMIN).set_governance(use.uri, consent="withdrawn")
    [(seq, details)] = reg.sql(
        "SELECT seq, details FROM ledger_events WHERE action = 'dataset.governance'"
    )
    forged = json.loads(details)
    forged["value"] = "granted"
    reg.sql("UPDATE ledger_events SET details = ? WHERE seq = ?", (json.dumps(forged), seq))
    with pytest.raises(VerificationError, match="whose values are not trusted"):
        DatasetService(reg.ctx, actor=ADMIN).show(use.uri)


def test_lineage_shows_a_model_limited_caller_nothing_of_other_models(
    reg: Reg, tmp_path: Path
) -> None:
    import dataclasses

    from modelward.core.principal import Principal, bind_principal
    from modelward.provenance.slsa import BaseModel
    from modelward.storage.model_files import hash_files

    _trust(reg)
    base = reg.push(make_bundle(tmp_path / "base", seed=1))
    base_root = RegistryService(reg.ctx, actor=ADMIN).resolve(base).root_digest
    run = dataclasses.replace(_cpu_run(()), base_model=BaseModel(base_root, base))
    folder = make_bundle(tmp_path / "derived", seed=2)
    root = Manifest("bundle", tuple(hash_files(list_model_files(folder))), Serialization())
    envelope = sign_provenance(
        provenance_statement(run, root.root_digest, "secret-derived"), reg.uploader
    )
    path = tmp_path / "derived.provenance.json"
    path.write_text(json.dumps(envelope.to_dict()))
    hook = ProvenanceService(reg.ctx, actor="bob").push_hook(path)
    signature = tmp_path / "derived.sig"
    sign_bundle(folder, reg.uploader, signature_path=signature)
    RegistryService(reg.ctx, actor="bob").push(
        folder,
        "secret-derived",
        signature_path=signature,
        public_key=Verifier(reg.uploader.public_key),
        provenance=hook,
    )
    service = ProvenanceService(reg.ctx, actor=ADMIN)
    found = service.lineage(base, downstream=True)["downstream"]
    assert [d["uri"] for d in found] == ["models:/secret-derived/1"]
    limited = Principal(name=ADMIN, issuer="modelward", model_pattern="llama")
    with bind_principal(limited):  # a token limited to `llama` learns nothing of the other
        assert service.lineage(base, downstream=True)["downstream"] == []
