"""Registry speed: modelward next to MLflow's model registry on SQLite, in one process.

Times, on the same small bundles (a 64 KiB safetensors file of random bytes, config.json,
tokenizer.json; a new bundle for every push) and each on a SQLite file in a temporary folder:
  push     modelward `RegistryService.push` (plain, and with the ingest scan as `modelward push`
           runs it) against MLflow's client run + log_artifacts + set_terminated +
           create_model_version (and the fluent start_run / log_artifacts / register_model);
  resolve  modelward `resolve("models:/NAME@ALIAS")` against MLflow's get_model_version_by_alias;
  ledger   the figures of benchmarks/bench_ledger.py (run in this process through its own main).
Prints medians and the ratios the registry issue states its targets in ("met" / "MISSED").
Not a test: it asserts nothing. Network connections beyond loopback are refused and reported.

    .venv/bin/python benchmarks/bench_registry.py [--pushes 50] [--resolves 1000]
        [--scan-pushes 20] [--ledger-events 1000000] [--no-mlflow] [--dir DIR]

The MLflow side needs the `bench` extra (mlflow-skinny); without it that side is reported missing.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import io
import json
import os
import platform
import shutil
import sqlite3
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MODEL = "bench-model"
ALIAS = "champion"
WEIGHTS_BYTES = 64 << 10
TARGET_PUSH_RATIO = 5.0  # MLflow push time / modelward push time
MLFLOW_PUSH_MS_IN_ISSUE = 110.0  # what the issue measured for MLflow; 5x of it is 22 ms
TARGET_RESOLVE_MS = 1.0
LOOPBACK = {"127.0.0.1", "::1", "localhost", "0.0.0.0"}

# --------------------------------------------------------------------------- network guard

blocked_network: list[str] = []


def _refuse_network(event: str, args: tuple[Any, ...]) -> None:
    """Audit hook: refuse any connection or name lookup that leaves this machine."""
    host: object = None
    if event == "socket.connect":
        address = args[1]
        if isinstance(address, tuple) and address:
            host = address[0]
    elif event == "socket.getaddrinfo":
        host = args[0]
    if host is None:
        return
    name = host.decode() if isinstance(host, bytes) else str(host)
    if name in LOOPBACK or name.startswith("127."):
        return
    blocked_network.append(f"{event} {name}")
    raise OSError(f"bench_registry: network access to {name} refused")


# ------------------------------------------------------------------------------- bundles


def safetensors_bytes(payload: bytes) -> bytes:
    header = json.dumps(
        {"weights": {"dtype": "U8", "shape": [len(payload)], "data_offsets": [0, len(payload)]}},
        separators=(",", ":"),
    ).encode()
    header += b" " * (-len(header) % 8)
    return struct.pack("<Q", len(header)) + header + payload


def make_bundles(root: Path, prefix: str, count: int) -> list[Path]:
    """`count` distinct small bundles: random weights, a config and a tokenizer."""
    bundles = []
    for i in range(count):
        folder = root / f"{prefix}-{i:04d}"
        folder.mkdir(parents=True)
        (folder / "model.safetensors").write_bytes(safetensors_bytes(os.urandom(WEIGHTS_BYTES)))
        config = {"architectures": ["BenchLM"], "hidden_size": 64, "bundle": f"{prefix}-{i}"}
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        vocab = {f"tok{j}": j for j in range(64)}
        tokenizer = {"version": "1.0", "model": {"type": "BPE", "vocab": vocab}, "seed": i}
        (folder / "tokenizer.json").write_text(json.dumps(tokenizer) + "\n")
        bundles.append(folder)
    return bundles


# ------------------------------------------------------------------------------- timing


@dataclass
class Timing:
    samples_ms: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.samples_ms)

    @property
    def p90(self) -> float:
        if len(self.samples_ms) < 2:
            return self.samples_ms[0]
        return statistics.quantiles(self.samples_ms, n=10)[8]


def time_each(items: list[Any], action: Callable[[Any], object], warmup: int) -> Timing:
    """Run `action` on every item; the first `warmup` calls are not counted."""
    timing = Timing()
    for i, item in enumerate(items):
        start = time.perf_counter()
        action(item)
        elapsed = (time.perf_counter() - start) * 1000
        if i >= warmup:
            timing.samples_ms.append(elapsed)
    return timing


def time_repeat(action: Callable[[], object], count: int, warmup: int = 20) -> Timing:
    return time_each([None] * (count + warmup), lambda _: action(), warmup)


# ------------------------------------------------------------------------------ modelward


def bench_modelward(
    work: Path, bundles: list[Path], scan_bundles: list[Path], warmup: int, resolves: int
) -> dict[str, Timing]:
    from modelward.services.context import open_registry
    from modelward.services.ingest import scan_for_push
    from modelward.services.registry import RegistryService
    from modelward.services.registry_init import initialize_registry

    home = work / "modelward-home"
    initialize_registry(home)
    context = open_registry(home)
    try:
        service = RegistryService(context, actor="bench")
        numbers: list[int] = []

        def push(bundle: Path) -> None:
            result = service.push(bundle, MODEL)
            if not result.created:
                raise SystemExit(f"{bundle} was not new to the registry; bundles must differ")
            numbers.append(result.version.number)

        timings = {"push": time_each(bundles, push, warmup)}
        if scan_bundles:

            def push_scanned(bundle: Path) -> None:
                service.push(bundle, MODEL + "-scanned", scanner=scan_for_push)

            timings["push+scan"] = time_each(scan_bundles, push_scanned, min(warmup, 2))
        service.set_alias(MODEL, ALIAS, numbers[len(numbers) // 2])
        uri = f"models:/{MODEL}@{ALIAS}"
        if service.resolve(uri).number != numbers[len(numbers) // 2]:
            raise SystemExit(f"{uri} resolved to the wrong version")
        timings["resolve"] = time_repeat(lambda: service.resolve(uri), resolves)
        return timings
    finally:
        context.close()


# --------------------------------------------------------------------------------- MLflow


def quiet_mlflow_environment(tracking_uri: str) -> None:
    """Before mlflow is imported: no telemetry, no git noise, SQLite for tracking and registry."""
    os.environ.update(
        {
            "MLFLOW_TRACKING_URI": tracking_uri,
            "MLFLOW_REGISTRY_URI": tracking_uri,
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "DO_NOT_TRACK": "true",
            "GIT_PYTHON_REFRESH": "quiet",
            "MLFLOW_LOGGING_LEVEL": "WARNING",
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
        }
    )


def bench_mlflow(
    work: Path, bundles: list[Path], warmup: int, resolves: int, timings: dict[str, Timing]
) -> None:
    """Fill `timings` as it goes; ImportError if MLflow is absent."""
    folder = work / "mlflow"
    folder.mkdir()
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    quiet_mlflow_environment(uri)
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=uri, registry_uri=uri)
    experiment = client.create_experiment(
        "bench", artifact_location=(folder / "artifacts").as_uri()
    )
    client.create_registered_model(MODEL)
    versions: list[str] = []

    def push(bundle: Path) -> None:
        run = client.create_run(experiment)
        run_id = run.info.run_id
        client.log_artifacts(run_id, str(bundle), "model")
        client.set_terminated(run_id)
        version = client.create_model_version(MODEL, f"runs:/{run_id}/model", run_id=run_id)
        versions.append(version.version)

    timings["push"] = time_each(bundles, push, warmup)

    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment_id=experiment)

    def push_fluent(bundle: Path) -> None:
        with mlflow.start_run():
            mlflow.log_artifacts(str(bundle), "model")
            source = mlflow.get_artifact_uri("model")
        # a runs:/ source would need an MLflow 3 "logged model"; the artifact URI needs none
        mlflow.register_model(source, MODEL + "-fluent")

    with contextlib.redirect_stderr(io.StringIO()):  # "Successfully registered model ..."
        timings["push fluent"] = time_each(bundles, push_fluent, warmup)

    chosen = versions[len(versions) // 2]
    client.set_registered_model_alias(MODEL, ALIAS, chosen)
    if str(client.get_model_version_by_alias(MODEL, ALIAS).version) != str(chosen):
        raise RuntimeError("MLflow resolved the alias to the wrong version")
    timings["resolve"] = time_repeat(
        lambda: client.get_model_version_by_alias(MODEL, ALIAS), resolves
    )


def installed_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return ""


# --------------------------------------------------------------------------------- ledger


@dataclass(frozen=True)
class LedgerFigure:
    label: str
    value: float
    unit: str
    target: float
    higher_is_better: bool


def run_ledger_benchmark(
    work: Path, events: int, figures: list[LedgerFigure], notes: list[str]
) -> None:
    """Run benchmarks/bench_ledger.py's own main() here, collecting each figure it reports
    into `figures` and its other printed lines into `notes` (as far as it got)."""
    path = Path(__file__).with_name("bench_ledger.py")
    spec = importlib.util.spec_from_file_location("bench_ledger", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    def collect(label: str, value: float, unit: str, target: float, higher: bool) -> None:
        figures.append(LedgerFigure(label, value, unit, target, higher))

    module._report = collect  # the figures go to our table instead of its own lines
    argv = sys.argv
    sys.argv = [str(path), "--events", str(events), "--dir", str(work)]
    output = io.StringIO()
    try:
        with contextlib.redirect_stdout(output):
            module.main()
    finally:
        sys.argv = argv
        notes.extend(line for line in output.getvalue().splitlines() if line.strip())


# -------------------------------------------------------------------------------- report


def verdict(value: float, target: float, higher_is_better: bool) -> str:
    met = value >= target if higher_is_better else value <= target
    return "met" if met else "MISSED"


def target_line(label: str, value: float, unit: str, target: float, higher: bool) -> str:
    sign = ">=" if higher else "<="
    return (
        f"{label:74} {value:>12,.2f} {unit:<3} target {sign} {target:>7,g} {unit:<3} "
        f"{verdict(value, target, higher)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pushes", type=int, default=50, help="timed pushes on each side")
    parser.add_argument("--warmup", type=int, default=5, help="untimed pushes first")
    parser.add_argument("--resolves", type=int, default=1000, help="timed alias resolutions")
    parser.add_argument("--scan-pushes", type=int, default=20, help="pushes with the scan; 0: none")
    parser.add_argument("--ledger-events", type=int, default=1_000_000, help="0: skip the ledger")
    parser.add_argument("--no-mlflow", action="store_true", help="time modelward only")
    parser.add_argument("--dir", type=Path, default=None, help="where the temporary folder goes")
    args = parser.parse_args()
    if args.pushes < 1 or args.resolves < 1:
        parser.error("--pushes and --resolves must be at least 1")

    sys.addaudithook(_refuse_network)
    os.environ["MODELWARD_ACTOR"] = "bench"  # the admin of the temporary registry
    started = time.perf_counter()
    work = Path(tempfile.mkdtemp(prefix="mw-bench-registry-", dir=args.dir))
    os.environ["MODELWARD_HOME"] = str(work / "modelward-home")
    try:
        bundles = make_bundles(work / "bundles", "bundle", args.warmup + args.pushes)
        scan_bundles = make_bundles(work / "bundles", "scanned", args.scan_pushes)
        mw = bench_modelward(work, bundles, scan_bundles, args.warmup, args.resolves)

        ml: dict[str, Timing] = {}
        ml_version = installed_version("mlflow-skinny") or installed_version("mlflow")
        ml_missing = ""
        if args.no_mlflow:
            ml_missing = "skipped (--no-mlflow)"
        else:
            try:
                bench_mlflow(work, bundles, args.warmup, args.resolves, ml)
            except ImportError as exc:
                ml_missing = (
                    f"MLflow is not installed ({exc}); install the bench extra "
                    "(pip install 'mlflow-skinny==3.17.2')"
                )
            except Exception as exc:  # whatever MLflow raises, the modelward side still reports
                ml_missing = f"MLflow failed: {type(exc).__name__}: {exc}"

        print(
            f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
            f"SQLite {sqlite3.sqlite_version}; "
            f"MLflow {ml_version if 'push' in ml else 'not measured'}"
        )
        print(
            f"bundle: 3 files ({WEIGHTS_BYTES >> 10} KiB random safetensors, config.json, "
            f"tokenizer.json), a new one per push; {args.pushes} timed pushes after "
            f"{args.warmup} untimed; {args.resolves} timed resolves"
        )
        print()
        print(f"{'what':64} {'median ms':>10} {'p90 ms':>8}")
        rows: list[tuple[str, Timing | None]] = [
            ("modelward push (RegistryService.push)", mw["push"]),
            ("modelward push with the ingest scan (as `modelward push`)", mw.get("push+scan")),
            ("MLflow client: create_run+log_artifacts+set_terminated+create_mv", ml.get("push")),
            ("MLflow fluent: start_run+log_artifacts+register_model", ml.get("push fluent")),
            (f"modelward resolve models:/{MODEL}@{ALIAS}", mw["resolve"]),
            ("MLflow get_model_version_by_alias", ml.get("resolve")),
        ]
        for label, timing in rows:
            if timing is not None:
                print(f"{label:64} {timing.median:10.2f} {timing.p90:8.2f}")
        if ml_missing:
            print(f"MLflow side missing: {ml_missing}")
        print()

        push_ms = mw["push"].median
        if "push" in ml:
            print(
                target_line(
                    "push: MLflow client time / modelward time",
                    ml["push"].median / push_ms,
                    "x",
                    TARGET_PUSH_RATIO,
                    True,
                )
            )
        if "push fluent" in ml:
            print(
                target_line(
                    "push: MLflow fluent time / modelward time",
                    ml["push fluent"].median / push_ms,
                    "x",
                    TARGET_PUSH_RATIO,
                    True,
                )
            )
        budget = MLFLOW_PUSH_MS_IN_ISSUE / TARGET_PUSH_RATIO
        print(
            target_line(
                f"push: modelward median (5x of the issue's {MLFLOW_PUSH_MS_IN_ISSUE:g} ms)",
                push_ms,
                "ms",
                budget,
                False,
            )
        )
        print(
            target_line(
                "resolve: modelward median", mw["resolve"].median, "ms", TARGET_RESOLVE_MS, False
            )
        )
        if "resolve" in ml:
            ratio = ml["resolve"].median / mw["resolve"].median
            print(f"{'resolve: MLflow time / modelward time (no target)':74} {ratio:>12,.2f} x")
        sys.stdout.flush()  # the registry figures show while the ledger part runs

        ledger: list[LedgerFigure] = []
        ledger_notes: list[str] = []
        ledger_missing = ""
        if args.ledger_events > 0:
            try:
                run_ledger_benchmark(work, args.ledger_events, ledger, ledger_notes)
            except Exception as exc:  # a broken ledger benchmark must not hide the rest
                ledger_missing = f"benchmarks/bench_ledger.py failed: {type(exc).__name__}: {exc}"
        else:
            ledger_missing = "skipped (--ledger-events 0)"
        for figure in ledger:
            print(
                target_line(
                    f"ledger: {figure.label}",
                    figure.value,
                    figure.unit,
                    figure.target,
                    figure.higher_is_better,
                )
            )
        for note in ledger_notes:
            print(f"ledger note: {note}")
        if ledger_missing:
            print(f"ledger figures missing: {ledger_missing}")
        print()
        if blocked_network:
            print(f"network: refused {len(blocked_network)} attempt(s): {blocked_network[:5]}")
        else:
            print("network: nothing tried to connect beyond loopback")
        print(f"total wall time: {time.perf_counter() - started:.0f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
