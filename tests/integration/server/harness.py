"""Starting `modelward serve` subprocesses on free loopback ports (bounded waits), and running
the CLI against them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.conftest import run_modelward

MODELWARD = str(Path(sys.executable).with_name("modelward"))
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    url: str
    process: subprocess.Popen[bytes]
    log: Path
    started_in: float

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=20)


def start_server(env: dict[str, str], log: Path, workers: int = 1) -> Server:
    port = free_port()
    full_env = {**os.environ, **env}
    began = time.monotonic()
    with log.open("wb") as handle:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen(
            [MODELWARD, "serve", "--port", str(port), "--workers", str(workers)],
            env=full_env,
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    deadline = began + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"the server exited: {log.read_text(errors='replace')}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return Server(url, process, log, time.monotonic() - began)
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    os.killpg(process.pid, signal.SIGKILL)
    raise AssertionError(f"the server did not come up in {START_TIMEOUT}s: {log.read_text()}")


@contextmanager
def running(env: dict[str, str], log: Path, workers: int = 1) -> Iterator[Server]:
    server = start_server(env, log, workers)
    try:
        yield server
    finally:
        server.stop()


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run_modelward(*args, env=env)


def create_token(env: dict[str, str], user: str, *extra: str) -> str:
    result = cli(env, "tokens", "create", "--user", user, "--json", *extra)
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["token"])


def remote_env(server: Server, token: str, home: Path) -> dict[str, str]:
    """The environment of a remote CLI user: a home of its own (for the pinned key), the URL,
    the token — and MODELWARD_ACTOR=admin, which must mean nothing."""
    return {
        "MODELWARD_URL": server.url,
        "MODELWARD_TOKEN": token,
        "MODELWARD_HOME": str(home),
        "MODELWARD_ACTOR": "admin",
    }
