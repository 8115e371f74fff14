"""OCI distribution: `oci push` and `oci pull` of a ~50 MB version through Debian's
docker-registry on 127.0.0.1, beside a plain folder copy (`shutil.copytree`) and the registry's
own local `pull`, and a raw HTTP PUT of the same files (the floor on this registry).

Push streams every blob from the registry's store (re-hashed as read) to the OCI registry (which
hashes it again), then writes the ModelPack manifest and the signature, ML-BOM and evidence
referrers (tag-schema fallback: this registry has no referrers API). Pull fetches the manifest,
verifies the signature against the layers, and streams every layer to disk hashing it. Timed in
process (no interpreter start); the OCI registry's storage is a temporary folder on this disk.

    .venv/bin/python benchmarks/bench_oci.py [--size-mb 50] [--rounds 3]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np
from safetensors.numpy import save_file

from modelward.services.context import open_registry
from modelward.services.evidence import EvidenceService
from modelward.services.oci import OciService
from modelward.services.registry import RegistryService
from modelward.services.registry_init import initialize_registry
from modelward.storage.oci_client import OciClient


def _bundle(folder: Path, size_mb: int) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(1)
    half = size_mb * (1 << 20) // 8  # two float32 shards
    for i in (1, 2):
        save_file(
            {"w": rng.standard_normal(half, dtype=np.float32)},
            str(folder / f"model-0000{i}-of-00002.safetensors"),
        )
    (folder / "config.json").write_text(json.dumps({"architectures": ["Bench"]}))
    return folder


def _registry(folder: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    folder.mkdir()
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
        "storage:\n  filesystem:\n"
        f"    rootdirectory: {folder / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    binary = shutil.which("docker-registry")
    if binary is None:
        raise SystemExit("docker-registry is not installed (apt-get install docker-registry)")
    process = subprocess.Popen([binary, "serve", str(config)])
    host = f"127.0.0.1:{port}"
    for _ in range(100):
        try:
            if httpx.get(f"http://{host}/v2/", timeout=1).status_code == 200:
                return process, host
        except httpx.HTTPError:
            time.sleep(0.1)
    process.terminate()
    raise SystemExit("docker-registry did not start")


def _raw_upload(host: str, repository: str, bundle: Path) -> None:
    """The floor on this registry: each file POSTed and PUT as is, nothing checked by us."""
    with httpx.Client(base_url=f"http://{host}", timeout=120) as client:
        for path in sorted(p for p in bundle.rglob("*") if p.is_file()):
            digest = "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()
            location = client.post(f"/v2/{repository}/blobs/uploads/").headers["location"]
            url = httpx.URL(location).copy_merge_params({"digest": digest})
            with open(path, "rb") as handle:
                headers = {"Content-Length": str(path.stat().st_size)}
                client.put(url, content=handle, headers=headers).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        os.environ["MODELWARD_HOME"] = str(root / "home")
        os.environ.setdefault("MODELWARD_ACTOR", "bench")
        initialize_registry(root / "home")
        context = open_registry(root / "home")
        bundle = _bundle(root / "bundle", args.size_mb)
        size = sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file())
        uri = RegistryService(context).push(bundle, "bench").version.uri
        process, host = _registry(root / "oci")
        try:
            service = OciService(lambda h: OciClient(h), context)
            timings: dict[str, list[float]] = {
                "copy": [],
                "local pull": [],
                "raw PUT": [],
                "push": [],
                "ML-BOM": [],
                "pull": [],
            }
            for n in range(args.rounds):
                start = time.perf_counter()
                shutil.copytree(bundle, root / f"copy{n}")
                timings["copy"].append(time.perf_counter() - start)
                start = time.perf_counter()
                RegistryService(context).pull(uri, root / f"local{n}")
                timings["local pull"].append(time.perf_counter() - start)
                start = time.perf_counter()
                _raw_upload(host, f"bench/raw{n}", bundle)
                timings["raw PUT"].append(time.perf_counter() - start)
                start = time.perf_counter()
                # a new repository each round, so every blob is uploaded again
                digest = service.push(uri, f"{host}/bench/r{n}:v1").digest
                timings["push"].append(time.perf_counter() - start)
                start = time.perf_counter()
                EvidenceService(context).bom(uri)  # part of push: built and schema-validated
                timings["ML-BOM"].append(time.perf_counter() - start)
                start = time.perf_counter()
                service.pull(f"{host}/bench/r{n}@{digest}", root / f"oci{n}")
                timings["pull"].append(time.perf_counter() - start)
        finally:
            process.terminate()
            process.wait(timeout=10)
            context.close()
    best = {k: min(v) for k, v in timings.items()}
    print(f"version: {size / 1e6:.1f} MB in 3 files; best of {args.rounds} rounds")
    for name, seconds in best.items():
        ratio = seconds / best["copy"]
        print(
            f"  {name:<11} {seconds:7.3f} s  {size / seconds / 1e6:8.1f} MB/s"
            f"  {ratio:6.1f}x copytree"
        )
    print(f"  oci push / raw PUT of the same files: {best['push'] / best['raw PUT']:.2f}x")
    print(f"  oci pull / modelward pull (local): {best['pull'] / best['local pull']:.2f}x")
    bytes_only = best["push"] - best["ML-BOM"]
    print(
        f"  oci push without the ML-BOM: {bytes_only:.3f} s, "
        f"{bytes_only / best['copy']:.1f}x copytree"
    )


if __name__ == "__main__":
    main()
