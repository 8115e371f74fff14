"""The probe sandbox's limits hold: no network, read-only files (the bundle copy included), the
registry's home and keys hidden, a scrubbed environment, memory and time limits."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
import uuid
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


def test_a_probe_cannot_undo_the_mounts_that_isolate_it(tmp_path: Path) -> None:
    """The hiding tmpfs and the read-only remounts are locked: with no capabilities left and in
    a nested user namespace, unmounting, remounting read-write or making a namespace of its own
    all fail, so the key stays hidden and the host stays unwritten."""
    home = tmp_path / "registry-home"
    (home / "keys").mkdir(parents=True)
    (home / "keys" / "registry.key").write_text("PRIVATE KEY")
    marker = home / "PLANTED_BY_SANDBOX"
    shm_marker = Path("/dev/shm") / f"modelward-test-{uuid.uuid4().hex}"
    code = (
        "import ctypes, json, os\n"
        "libc = ctypes.CDLL(None, use_errno=True)\n"
        "def errno(rc):\n"
        "    return 'ok' if rc == 0 else ctypes.get_errno()\n"
        "r = {}\n"
        f"r['umount'] = errno(libc.umount2({str(home)!r}.encode(), 2))\n"
        "r['remount_root'] = errno(libc.mount(None, b'/', None, ctypes.c_ulong(32 | 4096), None))\n"
        "r['remounted'] = []\n"
        "for line in open('/proc/self/mountinfo'):\n"
        "    point = line.split()[4]\n"
        "    if libc.mount(None, point.encode(), None, ctypes.c_ulong(32 | 4096), None) == 0:\n"
        "        r['remounted'].append(point)\n"
        "r['unshare'] = errno(libc.unshare(0x10000000 | 0x20000))\n"
        "r['caps'] = [l.strip() for l in open('/proc/self/status') if l.startswith('Cap')]\n"
        f"for name, path in (('key', {str(home / 'keys' / 'registry.key')!r}),):\n"
        "    try:\n"
        "        r[name] = open(path).read()\n"
        "    except OSError as e:\n"
        "        r[name] = e.errno\n"
        f"for name, path in (('marker', {str(marker)!r}), ('shm', {str(shm_marker)!r})):\n"
        "    try:\n"
        "        open(path, 'w').write('x'); r[name] = 'written'\n"
        "    except OSError as e:\n"
        "        r[name] = e.errno\n"
        "print(json.dumps(r))"
    )
    try:
        out = _run(code, hide=[home])
        planted = shm_marker.exists()
    finally:
        shm_marker.unlink(missing_ok=True)
    assert out["umount"] == 1 and out["remount_root"] == 1  # EPERM
    assert out["remounted"] == []
    assert out["unshare"] != "ok"
    assert all(line.endswith("0000000000000000") for line in out["caps"]), out["caps"]
    assert out["key"] in (1, 13)  # EPERM / EACCES: still under the empty tmpfs
    assert out["marker"] in (1, 13, 30) and out["shm"] in (1, 13, 30)
    assert not marker.exists() and not planted


def test_the_timeout_kills_daemons_and_does_not_wait_for_their_pipes() -> None:
    """A child that setsid()s and keeps stdout open is killed at the deadline with the rest
    of the sandbox's PID namespace; the run returns without waiting for the pipe's end."""
    code = (
        "import os, sys, time\n"
        "if os.fork() == 0:\n"
        "    os.setsid()\n"
        "    if os.fork() == 0:\n"
        "        time.sleep(60)\n"
        "        sys.stderr.write('DAEMON ALIVE\\n'); sys.stderr.flush()\n"
        "        os._exit(0)\n"
        "    os._exit(0)\n"
        "print('started', flush=True)\n"
        "time.sleep(1000)\n"
    )
    started = time.monotonic()
    result = run_sandboxed(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin"},
        hide=[],
        limits=SandboxLimits(memory_bytes=1024**3, cpu_seconds=60, wall_seconds=2),
    )
    elapsed = time.monotonic() - started
    assert result.timed_out and b"started" in result.stdout
    # the run ended at its deadline, long before the daemon (60 s) or the sleeper (1000 s)
    # would have let the pipe close; a wide margin, as the machine may be busy
    assert elapsed < 40, elapsed
    assert "DAEMON ALIVE" not in result.stderr
    # the daemon, had it survived, would show up as a process still running `code`
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True, check=True)
    assert "DAEMON ALIVE" not in ps.stdout


def test_the_sandbox_limits_processes() -> None:
    """The process limit is set on the command. (The kernel does not enforce RLIMIT_NPROC
    against the host's root, which CI runs as; the PID namespace bounds the rest, and the
    limit applies as soon as the registry runs as an ordinary user.)"""
    out = _run(
        "import json, resource\n"
        "print(json.dumps({'nproc': resource.getrlimit(resource.RLIMIT_NPROC)}))",
        hide=[],
        limits=SandboxLimits(
            memory_bytes=1024**3, cpu_seconds=20, wall_seconds=60, max_processes=8
        ),
    )
    assert out["nproc"] == [8, 8]
