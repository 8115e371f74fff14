"""Evidence bundles: export and verify times for a production release with 10 evaluations in a
ledger of 1,000+ events (`python benchmarks/bench_evidence.py`, from the repository root).

Prints the export time (in-process service), the offline verify time in-process and in a fresh
process (`modelward evidence verify`, import time included, only public keys), the bundle's size,
and ratios against two peers on the same registry: `audit verify` (recomputing the whole ledger
online) and the stock `model_signing verify key` of the uploader's signature alone (one link of
the many the bundle checks).
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.integration.evidence_registry import build_release

from modelward.services.audit import AuditService
from modelward.services.context import open_registry
from modelward.services.evidence_bundle import EvidenceBundleService
from modelward.services.evidence_verify import EvidenceTrust, verify_evidence_bundle
from modelward.signing.keys import Verifier, load_public_key


def _median(run: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _cli(args: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one run of a command in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(args, capture_output=True, env=env, timeout=300)
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"{args[:3]} failed: {result.stdout!r} {result.stderr!r}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return elapsed, cpu


def _median_cli(args: list[str], env: dict[str, str], repeat: int) -> tuple[float, float]:
    runs = [_cli(args, env) for _ in range(repeat)]
    return statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--evaluations", type=int, default=10)
    parser.add_argument("--events", type=int, default=1000, help="unrelated ledger events")
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        built = build_release(work, evaluations=args.evaluations, filler=args.events)
        context = open_registry(built.home)
        try:
            service = EvidenceBundleService(context, actor="alice")
            bundle = service.export(model="llama", environment="production")
            export_s = _median(
                lambda: service.export(model="llama", environment="production"), args.repeat
            )
            audit = AuditService.for_registry(context)
            size = audit.verify().size
            audit_s = _median(audit.verify, args.repeat)
        finally:
            context.close()
        path = work / "release.evidence"
        path.write_bytes(bundle.data)
        ledger = load_public_key(built.ledger_public)
        trust = EvidenceTrust(
            registry=Verifier(load_public_key(built.registry_public)),
            ledger=ledger,  # type: ignore[arg-type]
            uploaders=(("bob", Verifier(load_public_key(built.uploader_public))),),
        )
        report = verify_evidence_bundle(bundle.data, trust)
        if not report.ok:
            raise SystemExit(f"the bundle does not verify: {report.failures}")
        verify_s = _median(lambda: verify_evidence_bundle(bundle.data, trust), args.repeat)
        env = {**os.environ, "MODELWARD_HOME": str(work / "no-registry")}
        exe = Path(sys.executable).with_name("modelward")
        command = [str(exe), "evidence", "verify", str(path), "--trust", *built.trust_args()]
        fresh_s, fresh_cpu = _median_cli(command, env, args.repeat)
        signature = work / "m.sig"
        stock = [
            str(Path(sys.executable).with_name("model_signing")),
            "verify",
            "key",
            str(built.model),
            "--signature",
            str(signature),
            "--public_key",
            str(built.uploader_public),
        ]
        stock_s, stock_cpu = _median_cli(stock, env, args.repeat)
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(
        f"release with {args.evaluations} evaluations, ledger of {size} events; bundle "
        f"{len(bundle.data) / 1024:.0f} KiB, {bundle.members} members, {bundle.events} events "
        f"proven, {len(report.checks)} links checked"
    )
    print(f"export (in-process)                 {export_s * 1000:8.1f} ms")
    print(f"verify (in-process, offline)        {verify_s * 1000:8.1f} ms")
    print(
        f"verify (fresh process, CLI)         {fresh_s * 1000:8.1f} ms wall, "
        f"{fresh_cpu * 1000:.0f} ms CPU"
    )
    print(f"peer: audit verify (whole ledger)   {audit_s * 1000:8.1f} ms")
    print(
        f"peer: model_signing verify (1 sig)  {stock_s * 1000:8.1f} ms wall, "
        f"{stock_cpu * 1000:.0f} ms CPU"
    )
    print(
        f"ratios: verify/audit verify {verify_s / audit_s:.2f}x; fresh-process verify/"
        f"model_signing verify {fresh_s / stock_s:.2f}x wall, {fresh_cpu / stock_cpu:.2f}x CPU; "
        f"export/audit verify {export_s / audit_s:.2f}x"
    )


if __name__ == "__main__":
    main()
