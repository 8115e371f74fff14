"""The probe sandbox's limits hold: no network, read-only files (the bundle copy included), the
registry's home and keys hidden, a scrubbed environment, memory and time limits."""

from __future__ import annotations

import json
import socket
import sys
import threading
from pathlib import Path

import pytest

from modelward.errors import DeniedError
from modelward.forensics.sandbox import SandboxLimits, run_sandboxed, sandbox_available

LIMITS = SandboxLimits(memory_bytes=1024**3, cpu_seconds=20, wall_seconds=60)


def _run(code: str, hide: list[Path], limits: SandboxLimits = LIMITS) -> dict[str, str]:
    result = run_sandboxed(
        [sys.executable, "-I", "-c", code],
        env={"PATH": "/usr/bin:/bin"},
        hide=hide,
        limits=limits,
    )
    assert result.returncode == 0 and not result.timed_out, result.stderr
    return json.loads(result.stdout)


def test_sandboxes_can_be_made_here() -> None:
    assert sandbox_available() is None


def test_a_probe_cannot_open_a_socket(tmp_path: Path) -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    accepted: list[object] = []
    threading.Thread(target=lambda: accepted.append(server.accept()), daemon=True).start()
    try:
        out = _run(
            "import json, socket\n"
            "r = {}\n"
            "for host in ('127.0.0.1', 'localhost'):\n"
            "    try:\n"
            f"        socket.create_connection((host, {port}), timeout=2); r[host] = 'open'\n"
            "    except OSError as e:\n"
            "        r[host] = type(e).__name__ + str(e.errno)\n"
            "print(json.dumps(r))",
            hide=[],
        )
    finally:
        server.close()
    # the listener is on this machine's loopback; the sandbox has its own, which is down
    assert out["127.0.0.1"] != "open" and out["localhost"] != "open"
    assert accepted == []


def test_a_probe_cannot_read_the_registry_keys_or_write_its_bundle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "registry-home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "registry.key").write_text("PRIVATE KEY")
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "model.safetensors").write_bytes(b"weights")
    monkeypatch.setenv("MODELWARD_SECRET_TOKEN", "s3cret")
    code = (
        "import json, os\n"
        "r = {'env': sorted(os.environ)}\n"
        f"for name, path in (('key', {str(home / 'keys' / 'registry.key')!r}),"
        f" ('bundle', {str(bundle / 'model.safetensors')!r})):\n"
        "    try:\n"
        "        r[name] = open(path).read()\n"
        "    except OSError as e:\n"
        "        r[name] = 'error ' + str(e.errno)\n"
        f"for name, path in (('write_bundle', {str(bundle / 'model.safetensors')!r}),"
        f" ('write_new', {str(tmp_path / 'new')!r})):\n"
        "    try:\n"
        "        open(path, 'a').write('x'); r[name] = 'written'\n"
        "    except OSError as e:\n"
        "        r[name] = 'error ' + str(e.errno)\n"
        "open(os.environ['HOME'] + '/scratch', 'w').write('ok'); r['scratch'] = 'ok'\n"
        "print(json.dumps(r))"
    )
    out = _run(code, hide=[home])
    assert out["key"].startswith("error")  # hidden under an empty mount
    assert out["bundle"] == "weights"  # the copy is readable ...
    assert out["write_bundle"] == "error 30" and out["write_new"] == "error 30"  # ... read-only
    assert out["scratch"] == "ok"
    assert "MODELWARD_SECRET_TOKEN" not in out["env"]
    assert (bundle / "model.safetensors").read_bytes() == b"weights"
    assert not (tmp_path / "new").exists()


def test_memory_and_time_limits_hold() -> None:
    out = _run(
        "import json\n"
        "try:\n"
        "    b = bytearray(2 * 1024**3); r = 'allocated'\n"
        "except MemoryError:\n"
        "    r = 'MemoryError'\n"
        "print(json.dumps({'memory': r}))",
        hide=[],
    )
    assert out["memory"] == "MemoryError"
    result = run_sandboxed(
        [sys.executable, "-c", "while True: pass"],
        env={"PATH": "/usr/bin"},
        hide=[],
        limits=SandboxLimits(memory_bytes=1024**3, cpu_seconds=60, wall_seconds=2),
    )
    assert result.timed_out
    result = run_sandboxed(
        [sys.executable, "-c", "while True: pass"],
        env={"PATH": "/usr/bin"},
        hide=[],
        limits=SandboxLimits(memory_bytes=1024**3, cpu_seconds=1, wall_seconds=30),
    )
    assert not result.timed_out and result.returncode != 0  # SIGXCPU


def test_without_namespaces_probes_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(DeniedError, match="only in a sandbox"):
        run_sandboxed(["true"], env={}, hide=[], limits=LIMITS)
