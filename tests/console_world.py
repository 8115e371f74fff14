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


# --------------------------------------------------------------------------- runtime

WEBHOOK_SECRET = b"a webhook secret of 32 bytes...."
SPANS_PER_ARM = 120
SPAN_EVERY_S = 30


@dataclass(frozen=True)
class RuntimeSeed:
    started: dt.datetime  # the canary's start; spans follow every SPAN_EVERY_S seconds
    baseline_release_id: str
    candidate_release_id: str | None  # None: a split canary (the candidate is not released)
    verdicts: tuple[str, ...]
    accepted: int  # spans stored


def runtime_spans(
    n: int,
    version: int,
    start_ns: int,
    release_id: str | None,
    *,
    every_s: float = SPAN_EVERY_S,
    first: int = 0,
) -> bytes:
    """`n` OTLP JSON spans of llama-chat in staging, one every `every_s` seconds from
    `start_ns`, numbered from `first`, with fixed values (so totals are known): the baseline v1
    at 200-240 ms (mean 220), first token at 50 ms, 100-102 output tokens (mean 101), a refusal
    every 20th; the candidate v2 at 300-340 ms (mean 320), first token at 80 ms, 150 tokens, a
    refusal every 10th and an error every 40th. A span names its release, or (none) its model,
    version, environment and arm `canary`."""
    candidate = version != 1
    spans = []
    for k in range(n):
        i = first + k  # the span's number in the whole series (ids, values)
        end = start_ns + int((k + 1) * every_s * 1e9)
        duration = (0.30 if candidate else 0.20) + (i % 5) * 0.01
        attributes: list[dict[str, object]] = [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.usage.output_tokens", 150 if candidate else 100 + i % 3),
            _attr("gen_ai.server.time_to_first_token", 0.08 if candidate else 0.05),
            _attr("modelward.refusal", i % (10 if candidate else 20) == 0),
        ]
        if release_id is not None:
            attributes.append(_attr("modelward.release", release_id))
        else:
            attributes += [
                _attr("modelward.model", "llama-chat"),
                _attr("modelward.version", version),
                _attr("modelward.environment", "staging"),
                _attr("modelward.arm", "canary"),
            ]
        error = candidate and i % 40 == 0
        spans.append(
            {
                "traceId": f"{version:02x}{start_ns % 2**64:016x}{i:014x}",
                "spanId": f"{i + 1:016x}",
                "name": "chat llama-chat",
                "kind": 3,
                "startTimeUnixNano": str(end - int(duration * 1e9)),
                "endTimeUnixNano": str(end),
                "attributes": attributes,
                "status": {"code": 2 if error else 0},
            }
        )
    body = {"resourceSpans": [{"resource": {"attributes": []}, "scopeSpans": [{"spans": spans}]}]}
    return json.dumps(body).encode()


def _attr(key: str, value: object) -> dict[str, object]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    return {"key": key, "value": {"stringValue": value}}


def seed_runtime(
    world: World,
    *,
    promote_candidate: bool,
    spans: int = SPANS_PER_ARM,
    every_s: float = SPAN_EVERY_S,
) -> RuntimeSeed:
    """Runtime records for llama-chat in staging, as a service and an operator make them: a
    canary of v2 started two hours ago (against the v1 release; with `promote_candidate`, v2 is
    released first and its canary compares its release with the one before), `spans` requests
    per arm ingested as OTLP JSON, two judgements recorded (20 minutes in, when 42 requests per
    arm count with the clock skew allowed; 61 minutes in, all of them), and one alert delivered
    to a webhook on its second attempt (the first got a 503)."""
    from modelward.services.alerts import AlertService
    from modelward.services.canary import CanaryService, telemetry_source
    from modelward.services.telemetry import TelemetryService
    from modelward.storage.metadata.gate_repository import GateRepository

    if promote_candidate:
        GateService(world.ctx, actor="rex").promote("models:/llama-chat/2", "staging")
    with world.ctx.database.read() as conn:
        history = [r.release for r in GateRepository(conn).releases("llama-chat", "staging")]
    now = dt.datetime.now(dt.UTC)
    started = (now - dt.timedelta(hours=2)).replace(microsecond=0)
    start_ns = int(started.timestamp() * 1e9)
    canary = CanaryService(
        world.ctx, actor="rex", source=telemetry_source(world.ctx), clock=lambda: started
    )
    plan = canary.start("llama-chat", "staging", "models:/llama-chat/2", min_samples=50)
    baseline = str(plan["baseline_release_id"])
    candidate = history[-1].release_id if promote_candidate else None
    telemetry = TelemetryService(world.ctx, actor="rex")
    accepted = 0
    for version, release in ((1, baseline), (2, candidate)):
        for first in range(0, spans, 1000):  # OTLP batches as an exporter sends them
            body = runtime_spans(
                min(1000, spans - first),
                version,
                start_ns + int(first * every_s * 1e9),
                release,
                every_s=every_s,
                first=first,
            )
            accepted += telemetry.ingest_otlp(body).accepted
    verdicts = []
    for seconds in (20 * 60 + 15, 61 * 60 + 15):
        at = started + dt.timedelta(seconds=seconds)
        judge = CanaryService(
            world.ctx, actor="rex", source=telemetry_source(world.ctx), clock=lambda at=at: at
        )
        verdicts.append(judge.judge("llama-chat", "staging").verdict.verdict)
    AlertService(world.ctx, actor=ADMIN).add_webhook(
        "ops-pager", "https://hooks.example.org/modelward", "ops-1", WEBHOOK_SECRET
    )
    answers = iter((503, 200))
    AlertService(
        world.ctx, actor="rex", post=lambda url, body, headers: next(answers), sleep=lambda s: None
    ).send("canary.rollback", {"model": "llama-chat", "environment": "staging"})
    return RuntimeSeed(started, baseline, candidate, tuple(verdicts), accepted)
