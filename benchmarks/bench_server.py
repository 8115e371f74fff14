"""Load on `modelward serve`: 2 and 4 server processes sharing one PostgreSQL database (and one
blob folder), 32 concurrent clients pushing small versions, resolving them and promoting them to
staging for a bounded time. Prints errors, lost or duplicated versions (both must be 0),
throughput and p50/p99 latency per operation; then, when `mlflow` with its server is installed
(`make .venv-bench/.installed`: mlflow[auth] and modelward's server and postgres extras), the
same clients against `mlflow server --app-name basic-auth` registering model versions and
reading them back, and the ratios.

    .venv-bench/bin/python benchmarks/bench_server.py [--seconds 60] [--clients 32] [--servers 2 4]

Needs PostgreSQL at 127.0.0.1:5432 (trust auth); creates and drops its own database.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
MODELWARD = str(Path(sys.executable).with_name("modelward"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run(env: dict[str, str], *args: str) -> str:
    result = subprocess.run(
        [MODELWARD, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=300
    )
    if result.returncode != 0:
        raise SystemExit(f"modelward {' '.join(args)} failed: {result.stderr}")
    return result.stdout


def start(cmd: list[str], env: dict[str, str], url: str, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as handle:
        process = subprocess.Popen(
            cmd,
            env={**os.environ, **env},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{cmd[0]} exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            httpx.get(url, timeout=2)
            return process
        except httpx.HTTPError:
            time.sleep(0.2)
    stop(process)
    raise SystemExit(f"{cmd[0]} did not come up: {log.read_text(errors='replace')[-2000:]}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def small_bundle(folder: Path, seed: int) -> Path:
    import struct

    folder.mkdir(parents=True)
    header = json.dumps({"w": {"dtype": "U8", "shape": [256], "data_offsets": [0, 256]}}).encode()
    header += b" " * (-len(header) % 8)
    payload = struct.pack("<Q", len(header)) + header + seed.to_bytes(8, "big") * 32
    (folder / "model.safetensors").write_bytes(payload)
    (folder / "config.json").write_text(json.dumps({"seed": seed}))
    return folder


class Stats:
    def __init__(self) -> None:
        self.latencies: dict[str, list[float]] = defaultdict(list)
        self.errors: dict[str, int] = defaultdict(int)
        self.samples: list[str] = []
        self.lock = threading.Lock()

    def timed(self, op: str, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            result = call(*args, **kwargs)
        except Exception as exc:
            with self.lock:
                self.errors[op] += 1
                if len(self.samples) < 5:
                    self.samples.append(f"{op}: {type(exc).__name__}: {exc}")
            return None
        with self.lock:
            self.latencies[op].append(time.perf_counter() - began)
        return result

    def report(self, label: str, seconds: float) -> float:
        total = sum(len(v) for v in self.latencies.values())
        print(f"  {label}: {total / seconds:.1f} ops/s, errors {sum(self.errors.values())}")
        for op, values in sorted(self.latencies.items()):
            values.sort()
            p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
            print(
                f"    {op:8} n={len(values):6}  p50 {statistics.median(values) * 1000:7.1f} ms"
                f"  p99 {p99 * 1000:7.1f} ms  errors {self.errors.get(op, 0)}"
            )
        for sample in self.samples:
            print(f"    e.g. {sample}")
        return total / seconds


def bench_modelward(servers: int, clients: int, seconds: float, root: Path) -> float:
    from sqlalchemy import create_engine, text

    from modelward.client import Client

    name = f"mw_bench_{secrets.token_hex(4)}"
    admin = create_engine(ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    home = root / f"home-{servers}"
    env = {
        "MODELWARD_HOME": str(home),
        "MODELWARD_ACTOR": "root",
        "MODELWARD_DATABASE_URL": f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}",
        "MODELWARD_SPOOL_DIR": str(root),
    }
    processes = []
    try:
        run(env, "init")
        tokens = {}
        for user, role in (("t", "trainer"), ("v", "viewer"), ("r", "releaser")):
            run(env, "users", "add", user, "--role", role)
            tokens[role] = json.loads(run(env, "tokens", "create", "--user", user, "--json"))[
                "token"
            ]
        urls = []
        for i in range(servers):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            cmd = [MODELWARD, "serve", "--port", str(port)]
            processes.append(start(cmd, env, f"{url}/healthz", root / f"server-{servers}-{i}.log"))
            urls.append(url)
        stats = Stats()
        created: dict[str, list[int]] = defaultdict(list)
        stop_at = time.monotonic() + seconds
        counter = iter(range(10**9))
        counter_lock = threading.Lock()

        def client_loop(n: int) -> None:
            url = urls[n % len(urls)]
            known = root / f"known-{servers}-{n}.json"
            pusher = Client(url, tokens["trainer"], known_registries=known)
            viewer = Client(url, tokens["viewer"], known_registries=known)
            releaser = Client(url, tokens["releaser"], known_registries=known)
            model = f"bench-{n % 8}"
            try:
                while time.monotonic() < stop_at:
                    with counter_lock:
                        seed = next(counter)
                    bundle = small_bundle(root / f"b-{servers}-{seed}", seed)
                    pushed = stats.timed("push", pusher.push, bundle, model)
                    shutil.rmtree(bundle, ignore_errors=True)
                    if pushed is None:
                        continue
                    if pushed["created"]:
                        with stats.lock:
                            created[model].append(int(pushed["version"]))
                    uri = pushed["uri"]
                    stats.timed("resolve", viewer.resolve, uri)
                    stats.timed("promote", releaser.promote, uri, "staging")
            finally:
                for c in (pusher, viewer, releaser):
                    c.close()

        began = time.monotonic()
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        print(f"modelward: {servers} servers, {clients} clients, {elapsed:.0f} s")
        rate = stats.report("push + resolve + promote", elapsed)
        lost = duplicated = 0
        with Client(urls[0], tokens["viewer"], known_registries=root / "k.json") as check:
            for model, numbers in created.items():
                listed = [v["version"] for v in check.list_versions(model)]
                duplicated += len(numbers) - len(set(numbers))
                lost += len(set(numbers) - set(listed))
                if sorted(listed) != list(range(1, len(listed) + 1)):
                    lost += 1
        print(f"  lost versions {lost}, duplicated versions {duplicated}")
        return rate
    finally:
        for process in processes:
            stop(process)
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def bench_mlflow(clients: int, seconds: float, root: Path) -> float | None:
    mlflow = shutil.which("mlflow", path=str(Path(sys.executable).parent))
    if mlflow is None:
        print("mlflow server: not installed here (pip install mlflow in .venv-bench); skipped")
        return None
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    password = secrets.token_urlsafe(18)
    config = root / "basic_auth.ini"  # its own user database, never in the working directory
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
        "admin_username = admin\n"
        f"admin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
    )
    env = {
        "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16),
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_PASSWORD": password,
    }
    cmd = [
        mlflow,
        "server",
        "--app-name",
        "basic-auth",
        "--backend-store-uri",
        f"sqlite:///{root / 'mlflow.db'}",
        "--artifacts-destination",
        str(root / "mlartifacts"),
        "--port",
        str(port),
        "--workers",
        "2",
    ]
    process = start(cmd, env, f"{url}/health", root / "mlflow.log")
    auth = ("admin", password)
    stats = Stats()
    try:
        api = f"{url}/api/2.0/mlflow"
        httpx.post(
            f"{api}/registered-models/create", json={"name": "bench"}, auth=auth, timeout=120
        ).raise_for_status()
        stop_at = time.monotonic() + seconds

        def loop(n: int) -> None:
            with httpx.Client(auth=auth, timeout=60) as http:
                while time.monotonic() < stop_at:
                    made = stats.timed(
                        "register",
                        _checked,
                        http.post,
                        f"{api}/model-versions/create",
                        json={"name": "bench", "source": f"s3://b/{n}"},
                    )
                    if made is None:
                        continue
                    version = made.json()["model_version"]["version"]
                    stats.timed(
                        "resolve",
                        _checked,
                        http.get,
                        f"{api}/model-versions/get",
                        params={"name": "bench", "version": version},
                    )

        began = time.monotonic()
        threads = [threading.Thread(target=loop, args=(n,)) for n in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - began
        print(f"mlflow server --app-name basic-auth: {clients} clients, {elapsed:.0f} s")
        return stats.report("register + resolve", elapsed)
    finally:
        stop(process)


def _checked(call: Callable[..., httpx.Response], *args: Any, **kwargs: Any) -> httpx.Response:
    return call(*args, **kwargs).raise_for_status()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--servers", type=int, nargs="+", default=[2, 4])
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mw-bench-server-"))
    try:
        rates = {n: bench_modelward(n, args.clients, args.seconds, root) for n in args.servers}
        peer = bench_mlflow(args.clients, args.seconds, root)
        if peer:
            for n, rate in rates.items():
                print(f"ratio modelward ({n} servers, 3 ops/iteration) / mlflow: {rate / peer:.2f}")
        print("(modelward's push includes scanning, signing and a ledger append per version)")
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
