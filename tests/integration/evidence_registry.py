"""A registry holding one production release with everything an evidence bundle carries, built
in-process through the real services (shared by the evidence tests and bench_evidence.py).

The version is pushed by a trainer with a trusted uploader signature and SLSA provenance naming
a dataset (whose retention is then changed by a governance record); it is scanned on push,
evaluated `evaluations` times, promoted to staging, denied in production, approved by two
reviewers (one signing off), promoted to production, and the ledger gets `filler` unrelated
events; checkpoints are published along the way and two of three in-process witnesses cosign the
last one."""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from modelward.core.manifest import Serialization
from modelward.errors import DeniedError
from modelward.interfaces.witness_http import handle_add_checkpoint
from modelward.provenance.evaluation import (
    TEST_RESULT_V01,
    Evaluation,
    EvaluationCheck,
    EvaluationResults,
)
from modelward.provenance.slsa import DatasetUse, TrainingRun, provenance_statement, sign_provenance
from modelward.services.audit import AuditService
from modelward.services.context import RegistryContext, open_registry
from modelward.services.datasets import DatasetService
from modelward.services.gate import GateService
from modelward.services.provenance import ProvenanceService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.settings import SettingsService
from modelward.services.state_integrity import anchored_append
from modelward.services.trusted_keys import TrustedKeyService
from modelward.services.users import UserService
from modelward.services.witness import WitnessService
from modelward.services.witnessing import WitnessingService
from modelward.signing.keys import (
    Signer,
    Verifier,
    generate_private_key,
    load_private_key,
    public_key_pem,
    write_key_pair,
)
from modelward.signing.oms import sign_manifest
from modelward.storage.metadata.ledger_repository import LedgerRepository
from modelward.storage.metadata.registry_repository import RegistryRepository
from modelward.storage.model_files import hash_model
from modelward.storage.witness_config import WitnessEndpoint
from modelward.storage.witness_state import MemoryWitnessState

POLICY = b"""
rules:
  - id: scan-clean
    expression: facts.scan.verdict == 'clean'
    message: the bundle must scan clean
  - id: evaluations-present
    expression: size(facts.evaluations.metrics) > 0
    message: the version must have evaluation results
  - id: two-independent-approvals
    expression: size(facts.approvals.filter(a, a.reviewer != facts.candidate.author)) >= 2
    message: at least two reviewers other than the author must approve the version
"""


@dataclass
class BuiltRelease:
    home: Path
    work: Path
    model: Path
    uploader_public: Path
    witness_vkeys: list[Path]

    @property
    def registry_public(self) -> Path:
        return self.home / "keys" / "registry.key.pub"

    @property
    def ledger_public(self) -> Path:
        return self.home / "keys" / "ledger.key.pub"

    def trust_args(self) -> list[str]:
        return [
            f"registry={self.registry_public}",
            f"ledger={self.ledger_public}",
            f"uploader={self.uploader_public}",
        ]


@contextmanager
def _actor(name: str) -> Iterator[None]:
    saved = os.environ.get("MODELWARD_ACTOR")
    os.environ["MODELWARD_ACTOR"] = name
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("MODELWARD_ACTOR", None)
        else:
            os.environ["MODELWARD_ACTOR"] = saved


def _model(folder: Path) -> Path:
    folder.mkdir()
    weights = os.urandom(64)
    header = json.dumps(
        {"w": {"dtype": "U8", "shape": [len(weights)], "data_offsets": [0, len(weights)]}}
    ).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + weights)
    (folder / "config.json").write_text('{"layers": 2}')
    return folder


def attach_evaluation(context: RegistryContext, suite: str, accuracy: float) -> None:
    service = RegistryService(context, actor="alice")
    evaluation = Evaluation(
        suite=suite,
        results=EvaluationResults(
            metrics={f"{suite}_accuracy": accuracy},
            tests=(EvaluationCheck("loads", True),),
            configuration={},
        ),
        evaluated_on=datetime.now(UTC),
        evaluator="alice",
    )
    with context.database.transaction() as conn:
        repo = RegistryRepository(conn)
        record = repo.version("llama", 1)
        attestation_id = service.add_statement(
            repo,
            record.id,
            "evaluation",
            TEST_RESULT_V01,
            record.manifest(),
            evaluation.to_predicate(),
            record.created_at,
        )
        anchored_append(
            conn,
            "alice",
            "evaluation.attach",
            record.uri,
            {"model": "llama", "version": 1, "suite": suite},
            datetime.now(UTC),
            rows=[("attestations", str(attestation_id))],
        )


def _witness(context: RegistryContext, work: Path) -> list[Path]:
    audit = AuditService.for_registry(context)
    services = {
        name: WitnessService(
            name,
            Ed25519PrivateKey.generate(),
            {audit.origin: [audit.verifier]},
            MemoryWitnessState(),
        )
        for name in ("w1.example", "w2.example", "w3.example")
    }

    def post(url: str, body: bytes) -> object:
        return handle_add_checkpoint(services[url.split("/")[2]], body)

    endpoints = [
        WitnessEndpoint(name, f"http://{name}/", service.key) for name, service in services.items()
    ]
    result = WitnessingService(context.database, audit, post).checkpoint(endpoints[:2])  # type: ignore[arg-type]
    assert result.ok, result.to_dict()
    paths = []
    for name, service in services.items():
        path = work / f"{name}.vkey"
        path.write_text(service.key.vkey() + "\n")
        paths.append(path)
    return paths


def build_release(work: Path, *, evaluations: int = 2, filler: int = 0) -> BuiltRelease:
    home = work / "home"
    with _actor("alice"):
        initialize_registry(home)
    context = open_registry(home)
    try:
        users = UserService(context, actor="alice")
        for name, role in (
            ("bob", "trainer"),
            ("rita", "releaser"),
            ("rev1", "reviewer"),
            ("rev2", "reviewer"),
        ):
            users.add(name, role)
        SettingsService(context, actor="alice").set("gate.environments", ["staging", "production"])
        key_path = work / "bob.key"
        uploader_public = write_key_pair(key_path, generate_private_key())
        bob = Signer(load_private_key(key_path))
        TrustedKeyService(context, actor="alice").trust(
            public_key_pem(bob.public_key), "bob-laptop"
        )
        data = work / "data"
        data.mkdir()
        (data / "train.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
        datasets = DatasetService(context, actor="alice")
        added = datasets.add(
            data, name="reviews", license_id="MIT", source="crawl", consent="granted"
        )
        datasets.set_governance(
            added.record.uri, retention_until="2031-01-01", reason="contract renewed"
        )
        AuditService.for_registry(context).checkpoint()  # an older published checkpoint
        model = _model(work / "m")
        manifest = hash_model(model, Serialization())
        now = datetime.now(UTC)
        run = TrainingRun(
            builder_id="https://example.org/builder",
            invocation_id="run-1",
            started_on=now,
            finished_on=now,
            datasets=(DatasetUse(added.record.uri, added.manifest.digest),),
        )
        statement = work / "m.provenance.dsse.json"
        envelope = sign_provenance(provenance_statement(run, manifest.root_digest, "m"), bob)
        statement.write_text(json.dumps(envelope.to_dict()))
        signature = work / "m.sig"
        signature.write_text(json.dumps(sign_manifest(manifest, bob).to_dict()))
        pusher = RegistryService(context, actor="bob")
        pusher.push(
            model,
            "llama",
            signature_path=signature,
            public_key=Verifier(bob.public_key),
            provenance=ProvenanceService(context, "bob").push_hook(
                statement, [Verifier(bob.public_key)]
            ),
        )
        for number in range(evaluations):
            attach_evaluation(context, f"suite{number:02d}", 0.9)
        GateService(context, actor="alice").set_policy("production", POLICY)
        releaser = GateService(context, actor="rita")
        releaser.promote("models:/llama/1", "staging")
        AuditService.for_registry(context).checkpoint()
        denied = releaser.promote("models:/llama/1", "production")
        assert not denied.decision.allowed
        GateService(context, actor="rev1").approve("models:/llama/1", "production")
        GateService(context, actor="rev2").approve(
            "models:/llama/1", "production", comment="eval reviewed", sign_off=True
        )
        allowed = releaser.promote("models:/llama/1", "production")
        if not allowed.decision.allowed:
            raise DeniedError("the production promotion was denied", list(allowed.decision.failed))
        if filler:
            with context.database.transaction() as conn:
                ledger = LedgerRepository(conn)
                for number in range(filler):
                    ledger.append("alice", "test.event", f"thing:{number}", {"n": number}, now)
        witness_vkeys = _witness(context, work)
    finally:
        context.close()
    return BuiltRelease(home, work, model, uploader_public, witness_vkeys)
