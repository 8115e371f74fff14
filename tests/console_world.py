"""A registry with something to look at, for the console's tests and its benchmark: one user
per role, a trusted uploader key, a dataset, two signed versions of `llama-chat` (the first
with signed training provenance, both with evaluations), a staging release, and hostile text
(a file name, a description and an approval comment that try to inject markup)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from pathlib import Path

from modelward.core.manifest import Manifest, Serialization
from modelward.provenance.evaluation import EvaluationResults
from modelward.provenance.slsa import (
    BaseModel,
    DatasetUse,
    EnvironmentInfo,
    SourceInfo,
    TrainingRun,
    provenance_statement,
    sign_provenance,
)
from modelward.services.bundle_signing import sign_bundle
from modelward.services.change import change_hook
from modelward.services.context import RegistryContext, open_registry
from modelward.services.datasets import DatasetService
from modelward.services.evidence import EvidenceService
from modelward.services.gate import GateService
from modelward.services.provenance import PushProvenance
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.services.trusted_keys import TrustedKeyService
from modelward.services.users import UserService
from modelward.signing.keys import Signer, Verifier, generate_private_key, public_key_pem
from modelward.storage.model_files import hash_files, list_model_files
from tests.unit.registry.bundles import make_bundle

ADMIN = "root"
USERS = {
    "alice": "admin",
    "tina": "trainer",
    "rita": "reviewer",
    "rex": "releaser",
    "ava": "auditor",
    "vic": "viewer",
}
HOSTILE_FILE = "<img src=x onerror=alert(1)>.json"
HOSTILE_COMMENT = "<script>alert('xss')</script> looks fine"
HOSTILE_DESCRIPTION = '"><svg onload=alert(2)>'


@dataclass
class World:
    home: Path
    ctx: RegistryContext
    uploader: Signer
    root: Path
    pushed: int = 0

    def push(
        self,
        name: str,
        seed: int,
        *,
        provenance: bool = False,
        extra: bool = False,
        change: tuple[str, str] | None = None,
    ) -> str:
        folder = make_bundle(self.root / f"{name}-{seed}", seed=seed)
        if extra:
            (folder / HOSTILE_FILE).write_text(json.dumps({"note": "a hostile file name"}))
        signature = folder.parent / f"{folder.name}.sig"
        sign_bundle(folder, self.uploader, signature_path=signature)
        hook = None
        if provenance:
            hook = self._provenance(folder)
        result = RegistryService(self.ctx, actor="tina").push(
            folder,
            name,
            description=HOSTILE_DESCRIPTION if extra else f"seed {seed}",
            signature_path=signature,
            public_key=Verifier(self.uploader.public_key),
            provenance=hook,
            change=change_hook(*change) if change else None,
        )
        self.pushed += 1
        return result.version.uri

    def _provenance(self, folder: Path) -> PushProvenance:
        added = DatasetService(self.ctx, actor="tina").add(
            self._dataset_folder(),
            name="support-chats",
            license_id="CC-BY-4.0",
            source="https://data.example.org/support",
            consent="granted",
        )
        root = Manifest(
            "bundle", tuple(hash_files(list_model_files(folder))), Serialization()
        ).root_digest
        start = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.UTC)
        run = TrainingRun(
            builder_id="https://modelward.dev/builders/local-training/v1",
            invocation_id="run-7",
            started_on=start,
            finished_on=start + dt.timedelta(hours=1),
            command=("python", "train.py"),
            hyperparameters={"lr": 0.001},
            seeds={"python": 1},
            datasets=(DatasetUse(added.record.uri, added.record.manifest_digest),),
            base_model=BaseModel(
                digest="b" * 64, uri="https://huggingface.co/meta-llama/Llama-3.2-1B"
            ),
            source=SourceInfo("https://git.example.org/ml/train.git", "c" * 40, dirty=False),
            environment=EnvironmentInfo("3.11.7", "sha256:" + "d" * 64, "Linux-x86_64", None),
        )
        envelope = sign_provenance(provenance_statement(run, root, "bundle"), self.uploader)
        return PushProvenance(
            self.ctx, json.dumps(envelope.to_dict()).encode(), [Verifier(self.uploader.public_key)]
        )

    def _dataset_folder(self) -> Path:
        folder = self.root / "support-chats"
        if not folder.exists():
            folder.mkdir()
            (folder / "train.jsonl").write_text('{"text": "hello"}\n{"text": "bye"}\n')
        return folder

    def evaluate(self, uri: str, suite: str, metrics: dict[str, float]) -> None:
        EvidenceService(self.ctx, actor="tina").attach_evaluation(
            uri, suite, EvaluationResults(metrics=metrics)
        )


def build_world(root: Path) -> World:
    """Initialise a registry under `root / "home"` as ADMIN and fill it (MODELWARD_HOME and
    MODELWARD_ACTOR must be set by the caller)."""
    home = root / "home"
    initialize_registry(home)
    ctx = open_registry(home)
    users = UserService(ctx, actor=ADMIN)
    for name, role in USERS.items():
        users.add(name, role)
    uploader = Signer(generate_private_key("ecdsa-p256"))
    TrustedKeyService(ctx, actor=ADMIN).trust(public_key_pem(uploader.public_key), "tina-laptop")
    world = World(home, ctx, uploader, root)
    v1 = world.push("llama-chat", 1, provenance=True)
    world.evaluate(v1, "helpfulness", {"accuracy": 0.81, "refusal_rate": 0.04})
    v2 = world.push("llama-chat", 2, extra=True, change=("weights", "compatible"))
    world.evaluate(v2, "helpfulness", {"accuracy": 0.86, "refusal_rate": 0.03})
    world.push("mistral-tiny", 3)
    gate = GateService(ctx, actor="rex")
    gate.promote(v1, "staging", flags={"temperature": 0.2}, risk_tier="medium")
    return world
