"""Signing and verification speed: modelward vs the model_signing tool vs raw hashlib.

Builds a synthetic model (default 4 files of 512 MiB plus small JSON files), then times, in one
run and on the same bytes, whole-process wall time of:
  modelward sign/verify (sha256 and blake3), model_signing sign key/verify key,
and in-process hashlib.sha256 on one thread and on two threads as the physical reference.
Prints seconds, GB/s and the ratios the targets are stated in. Not a test: it asserts nothing.

    python benchmarks/bench_signing.py [--files 4] [--size-mib 512] [--repeat 3]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

BIN = Path(sys.executable).parent


def build_model(root: Path, files: int, size_mib: int) -> tuple[Path, int]:
    model = root / "model"
    model.mkdir()
    block = os.urandom(1 << 20)
    total = 0
    for i in range(files):
        with open(model / f"model-{i:05d}.safetensors", "wb") as handle:
            for j in range(size_mib):
                handle.write(block[j % 7 :] + block[: j % 7])
        total += size_mib << 20
    for name in ("config.json", "tokenizer.json", "generation_config.json"):
        (model / name).write_text('{"example": true}\n')
        total += 18
    return model, total


def wall(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = subprocess.run(cmd, capture_output=True, text=True)
        elapsed = time.perf_counter() - start
        if result.returncode != 0:
            raise SystemExit(f"command failed: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
        times.append(elapsed)
    return statistics.median(times)


def hashlib_rate(paths: list[Path], threads: int) -> float:
    def digest(path: Path) -> int:
        h = hashlib.sha256()
        buf = bytearray(8 << 20)
        view = memoryview(buf)
        n_total = 0
        with open(path, "rb", buffering=0) as handle:
            while n := handle.readinto(buf):
                h.update(view[:n])
                n_total += n
        return n_total

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        total = sum(pool.map(digest, paths))
    return total / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--size-mib", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="mw-bench-"))
    try:
        model, total = build_model(work, args.files, args.size_mib)
        gb = total / 1e9
        key = work / "key"
        subprocess.run(
            [str(BIN / "modelward"), "keys", "generate", "--out", str(key)],
            check=True,
            capture_output=True,
        )
        paths = sorted(p for p in model.iterdir())
        hashlib_rate(paths, 1)  # warm the page cache
        one = statistics.median(hashlib_rate(paths, 1) for _ in range(args.repeat))
        two = statistics.median(hashlib_rate(paths, 2) for _ in range(args.repeat))

        mw = str(BIN / "modelward")
        ms = str(BIN / "model_signing")
        rows: dict[str, float] = {}
        for hash_type in ("sha256", "blake3"):
            sig = work / f"mw-{hash_type}.sig"
            rows[f"modelward sign ({hash_type})"] = wall(
                [
                    mw,
                    "sign",
                    str(model),
                    "--key",
                    str(key),
                    "--signature",
                    str(sig),
                    "--hash",
                    hash_type,
                ],
                args.repeat,
            )
            rows[f"modelward verify ({hash_type})"] = wall(
                [mw, "verify", str(model), "--public-key", f"{key}.pub", "--signature", str(sig)],
                args.repeat,
            )
        have_ms = Path(ms).exists()
        if have_ms:
            sig = work / "ms.sig"
            rows["model_signing sign key"] = wall(
                [ms, "sign", "key", str(model), "--private_key", str(key), "--signature", str(sig)],
                args.repeat,
            )
            rows["model_signing verify key"] = wall(
                [
                    ms,
                    "verify",
                    "key",
                    str(model),
                    "--signature",
                    str(sig),
                    "--public_key",
                    f"{key}.pub",
                ],
                args.repeat,
            )
        startup = wall([mw, "verify", "--help"], max(args.repeat, 5))

        print(
            f"model: {args.files} x {args.size_mib} MiB + 3 JSON files = {gb:.2f} GB, "
            f"{os.cpu_count()} cores"
        )
        print(f"{'what':34} {'wall s':>8} {'GB/s':>7}")
        print(f"{'hashlib.sha256, 1 thread':34} {gb / one * 1e9:8.2f} {one / 1e9:7.2f}")
        print(f"{'hashlib.sha256, 2 threads':34} {gb / two * 1e9:8.2f} {two / 1e9:7.2f}")
        for name, seconds in rows.items():
            print(f"{name:34} {seconds:8.2f} {gb / seconds:7.2f}")
        print(f"{'modelward verify --help':34} {startup:8.3f}")
        print()

        def ratio(label: str, value: float, target: float, more_is_better: bool = True) -> None:
            ok = value >= target if more_is_better else value <= target
            print(
                f"{label:58} {value:6.2f}  target {'>=' if more_is_better else '<='} "
                f"{target:<5} {'met' if ok else 'MISSED'}"
            )

        if have_ms:
            ratio(
                "sign sha256: model_signing time / modelward time",
                rows["model_signing sign key"] / rows["modelward sign (sha256)"],
                1.5,
            )
            ratio(
                "verify sha256: model_signing time / modelward time",
                rows["model_signing verify key"] / rows["modelward verify (sha256)"],
                1.5,
            )
        else:
            print("model_signing is not installed: pip install 'model-signing==1.1.1' pyopenssl")
        ratio(
            "sign sha256 throughput / two-core hashlib",
            total / rows["modelward sign (sha256)"] / two,
            0.8,
        )
        ratio(
            "verify sha256 throughput / two-core hashlib",
            total / rows["modelward verify (sha256)"] / two,
            0.8,
        )
        ratio(
            "sign: sha256 time / blake3 time",
            rows["modelward sign (sha256)"] / rows["modelward sign (blake3)"],
            1.8,
        )
        ratio(
            "verify: sha256 time / blake3 time",
            rows["modelward verify (sha256)"] / rows["modelward verify (blake3)"],
            1.8,
        )
        ratio("start-up: `modelward verify --help` seconds", startup, 0.3, more_is_better=False)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
