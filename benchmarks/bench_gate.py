"""Gate throughput: decisions per second for the default production policy, in process.

Builds realistic facts (eight metrics, a current version to compare against, three approvals, a
recent drill) and evaluates the shipped production policy in a loop, alternating an allowed and a
denied candidate. Prints decisions per second and the ratio to the 2,000/s target. The figure
includes the facts digest (RFC 8785) every decision records; it excludes storage and signing.

Then times `promote` end to end on a temporary registry: the in-process service call (facts from
the database, policy evaluation, signed VSA, decision + release + alias + ledger in one
transaction) and the `modelward promote` CLI in a subprocess (interpreter start included).

    .venv/bin/python benchmarks/bench_gate.py [--seconds 3] [--promotions 20]
"""

from __future__ import annotations

import argparse
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from modelward.core.change_class import classify_change
from modelward.core.policy import evaluate
from modelward.policy.cel_engine import CelEngine
from modelward.policy.facts import (
    Approval,
    CurrentVersion,
    DatasetEligibility,
    DrillOutcome,
    Metric,
    build_facts,
)
from modelward.policy.loader import load_default_policy

TARGET_PER_SECOND = 2000.0
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)
METRICS = {
    "accuracy": (0.91, 0.85, True),
    "f1": (0.88, 0.80, True),
    "toxicity_rate": (0.01, 0.02, False),
    "jailbreak_success_rate": (0.03, 0.05, False),
    "hallucination_rate": (0.07, 0.10, False),
    "mmlu": (0.71, 0.65, True),
    "latency_p95_ms": (420.0, 500.0, False),
    "refusal_accuracy": (0.95, 0.90, True),
}


def realistic_facts(risk_tier: str, drill_age_days: int) -> dict[str, Any]:
    previous = {f"model-0000{i}-of-00004.safetensors": f"sha256:{i:064x}" for i in range(1, 5)}
    previous |= {"config.json": "sha256:" + "c" * 64, "tokenizer.json": "sha256:" + "d" * 64}
    current_manifest = dict(previous, **{"model-00001-of-00004.safetensors": "sha256:" + "e" * 64})
    change = classify_change(previous, current_manifest, "weights", "eval-only").to_fact()
    return build_facts(
        time=NOW,
        environment="production",
        previous_environment="canary",
        model="support-assistant",
        version=7,
        digest="sha256:" + "a" * 64,
        author="alice",
        created_at=NOW - timedelta(days=3),
        deployed_in=("staging", "canary"),
        risk_tier=risk_tier,
        change=change,
        verified_key_ids=("release-key-1",),
        registry_signed=True,
        scan_verdict="clean",
        scan_findings=0,
        scanned_at=NOW - timedelta(days=3),
        provenance_present=True,
        datasets=DatasetEligibility(("datasets:/support-chats/3",), {}),
        metrics={name: Metric(v, t, hib) for name, (v, t, hib) in METRICS.items()},
        current=CurrentVersion(
            model="support-assistant",
            version=6,
            digest="sha256:" + "b" * 64,
            metrics={
                name: Metric(v * (0.99 if hib else 1.01), t, hib)
                for name, (v, t, hib) in METRICS.items()
            },
        ),
        approvals=(
            Approval("bob", NOW - timedelta(days=1)),
            Approval("carol", NOW - timedelta(hours=5), sign_off=True),
            Approval("alice", NOW - timedelta(hours=2)),
        ),
        rollback_drill=DrillOutcome(True, NOW - timedelta(days=drill_age_days)),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="how long to measure")
    parser.add_argument("--promotions", type=int, default=20, help="end-to-end promote runs")
    args = parser.parse_args()

    engine = CelEngine()
    policy = load_default_policy("production", engine)
    allowed = realistic_facts("high", drill_age_days=10)
    denied = realistic_facts("high", drill_age_days=45)
    if not evaluate(policy, allowed, engine).allowed:
        raise SystemExit("benchmark facts should be allowed; the default policy changed?")
    if evaluate(policy, denied, engine).allowed:
        raise SystemExit("benchmark facts should be denied; the default policy changed?")

    decisions = 0
    start, cpu_start = time.perf_counter(), time.process_time()
    deadline = start + args.seconds
    while time.perf_counter() < deadline:
        for _ in range(100):
            evaluate(policy, allowed, engine)
            evaluate(policy, denied, engine)
        decisions += 200
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu_start
    rate, cpu_rate = decisions / elapsed, decisions / cpu
    print(f"policy: production ({len(policy.rules)} rules, {policy.digest[:19]}…)")
    print(f"decisions: {decisions} in {elapsed:.2f} s wall, {cpu:.2f} s CPU")
    print(f"in-process decisions per second: {rate:,.0f} (per CPU second: {cpu_rate:,.0f})")
    print(
        f"ratio to target ({TARGET_PER_SECOND:,.0f}/s): {rate / TARGET_PER_SECOND:.2f}x "
        f"(CPU: {cpu_rate / TARGET_PER_SECOND:.2f}x; the two differ when the machine is busy)"
    )
    bench_promote(args.promotions)


def bench_promote(count: int) -> None:
    """Time promote end to end: the service in process, then the CLI in a subprocess."""
    import os
    import struct
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from modelward.services.bundle_signing import sign_bundle
    from modelward.services.context import open_registry
    from modelward.services.gate import GateService
    from modelward.services.ingest import scan_for_push
    from modelward.services.registry import RegistryService
    from modelward.services.registry_init import initialize_registry
    from modelward.services.trusted_keys import TrustedKeyService
    from modelward.services.users import UserService
    from modelward.signing.keys import Signer, Verifier, generate_private_key, public_key_pem

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ.update({"MODELWARD_HOME": str(home), "MODELWARD_ACTOR": "admin"})
        for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL"):
            os.environ.pop(variable, None)
        initialize_registry(home)
        context = open_registry(home)
        UserService(context, "admin").add("trainer", "trainer")
        uploader = Signer(generate_private_key("ecdsa-p256"))
        TrustedKeyService(context, "admin").trust(public_key_pem(uploader.public_key), "bench")
        signature = Path(tmp) / "bundle.sig"
        bundle = Path(tmp) / "bundle"
        bundle.mkdir()
        header = b'{"w":{"dtype":"U8","shape":[4],"data_offsets":[0,4]}}'
        uris = []
        for i in range(count + 1):
            (bundle / "model.safetensors").write_bytes(
                struct.pack("<Q", len(header)) + header + i.to_bytes(4, "big")
            )
            sign_bundle(bundle, uploader, signature_path=signature)
            pushed = RegistryService(context, "trainer").push(
                bundle,
                "bench",
                scanner=lambda path, files: scan_for_push(path, files),
                signature_path=signature,
                public_key=Verifier(uploader.public_key),
            )
            uris.append(pushed.version.uri)
        gate = GateService(context, "admin")
        start = time.perf_counter()
        for uri in uris[:count]:
            if not gate.promote(uri, "staging").decision.allowed:
                raise SystemExit("benchmark promotion was denied")
        service_ms = (time.perf_counter() - start) * 1000 / count
        context.close()
        exe = Path(sys.executable).with_name("modelward")
        runs = max(1, min(count, 5))
        start = time.perf_counter()
        for _ in range(runs):
            done = subprocess.run(
                [str(exe), "promote", uris[-1], "--to", "staging"], capture_output=True, text=True
            )
            if done.returncode != 0:
                raise SystemExit(f"CLI promotion failed: {done.stderr}")
        cli_ms = (time.perf_counter() - start) * 1000 / runs
    print(f"promote end to end, in-process service call: {service_ms:.1f} ms ({count} runs)")
    print(f"promote end to end, CLI subprocess: {cli_ms:.0f} ms ({runs} runs)")


if __name__ == "__main__":
    main()
