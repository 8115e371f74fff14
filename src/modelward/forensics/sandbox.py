"""Running untrusted model code (a probe loading a model) in a sandbox.

`run_sandboxed` starts the command under `unshare --user --map-root-user --net --mount --pid
--fork --mount-proc`:

- network: a new network namespace with only a loopback interface that is down, so any
  connect() fails (no route), whatever proxies or addresses the code tries;
- files: every mount is remounted read-only (the bundle copy included), the folders in `hide`
  (the registry's home with its keys, the invoking user's home) are covered by empty tmpfs
  mounts, and the command's only writable place is a small scratch tmpfs, which is also its
  HOME and TMPDIR;
- privileges: the command runs in a nested user namespace (so those mounts are locked: it
  cannot unmount or remount them) with no capabilities at all and no_new_privs;
- processes: a PID namespace whose init exits when the command does, and the kernel then kills
  every process left in it (a daemon that setsid()s is killed too);
- limits: RLIMIT_AS (memory), RLIMIT_CPU (CPU seconds), RLIMIT_FSIZE (file size),
  RLIMIT_NPROC (processes and threads; the kernel does not apply it when the invoking user
  is the host's root), no core dumps, and a wall-clock timeout after which the
  namespace is killed and its output is no longer waited for;
- environment: only the variables passed (no inherited secrets).

When unshare or user namespaces are not available the run is refused (`DeniedError`): probes
never run unisolated. What it does not do: it runs as the invoking user's uid mapped to root in
its own namespace (not another uid), does not filter system calls (no seccomp), and the rest of
the file system stays readable (read-only) apart from the hidden folders.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import DeniedError, InputError

_NAMESPACES = (
    "--user",
    "--map-root-user",
    "--net",
    "--mount",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
)
# after the deadline, output already written is read for this long, then the pipes are closed
_DRAIN_SECONDS = 2.0


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 8 * 1024**3
    cpu_seconds: int = 1800
    wall_seconds: float = 1800.0
    scratch_bytes: int = 256 * 1024**2
    # threads count: torch and tokenizers start a few dozen
    max_processes: int = 512

    def to_dict(self) -> dict[str, float]:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "scratch_bytes": self.scratch_bytes,
            "max_processes": self.max_processes,
        }


@dataclass(frozen=True)
class SandboxResult:
    returncode: int
    stdout: bytes
    stderr: str
    timed_out: bool


def sandbox_available() -> str | None:
    """None when sandboxes can be made here, else why not."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return "unshare (util-linux) is not installed"
    try:
        done = subprocess.run(
            [unshare, *_NAMESPACES, "true"], capture_output=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"unshare cannot run: {exc}"
    if done.returncode != 0:
        return (
            "user, network and mount namespaces are not available: "
            + done.stderr.decode(errors="replace").strip()
        )
    return None


def run_sandboxed(
    command: Sequence[str],
    *,
    env: Mapping[str, str],
    hide: Sequence[Path],
    limits: SandboxLimits,
) -> SandboxResult:
    """Run `command` isolated as described above; its stdout is returned (bounded by the
    caller's reading), stderr decoded."""
    if not command:
        raise InputError("no command to run in the sandbox")
    if (
        not limits.wall_seconds > 0
        or limits.cpu_seconds < 1
        or limits.memory_bytes < 2**26
        or limits.max_processes < 1
    ):
        raise InputError("sandbox limits must be positive (memory at least 64 MiB)")
    problem = sandbox_available()
    if problem is not None:
        raise DeniedError(f"probes run only in a sandbox, and none can be made here: {problem}")
    unshare = shutil.which("unshare")
    assert unshare is not None
    with tempfile.TemporaryDirectory(prefix="modelward-sandbox-") as work:
        scratch = Path(work) / "scratch"
        scratch.mkdir()
        empty = Path(work) / "empty"
        empty.write_bytes(b"")
        keep = [Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.executable, work)]
        keep.append(Path(__file__).resolve().parents[2])
        hidden_dirs: list[str] = []
        hidden_files: list[str] = []
        for folder in sorted({Path(h).resolve() for h in hide if Path(h).is_dir()}):
            _plan_hiding(folder, keep, hidden_dirs, hidden_files)
        spec = {
            "hide": hidden_dirs,
            "hide_files": hidden_files,
            "empty": str(empty),
            "scratch": str(scratch),
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "scratch_bytes": limits.scratch_bytes,
            "max_processes": limits.max_processes,
            "command": list(command),
            "env": {**env, "HOME": str(scratch), "TMPDIR": str(scratch)},
        }
        spec_path = Path(work) / "spec.json"
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
        package_root = str(Path(__file__).resolve().parents[2])
        argv = [
            unshare,
            *_NAMESPACES,
            "--",
            sys.executable,
            "-I",
            "-c",
            f"import sys; sys.path.insert(0, {package_root!r}); "
            "from modelward.forensics._sandbox_exec import main; sys.exit(main())",
            str(spec_path),
        ]
        process = subprocess.Popen(
            argv,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        out, err, timed_out = _read_until(process, time.monotonic() + limits.wall_seconds)
    return SandboxResult(process.returncode, out, err.decode(errors="replace"), timed_out)


def _read_until(process: subprocess.Popen[bytes], deadline: float) -> tuple[bytes, bytes, bool]:
    """Collect stdout and stderr until both close or the deadline passes; at the deadline kill
    the sandbox (its PID namespace dies with its init) and stop waiting for the pipes shortly
    after, whoever still holds them."""
    assert process.stdout is not None and process.stderr is not None
    out_fd, err_fd = process.stdout.fileno(), process.stderr.fileno()
    chunks: dict[int, list[bytes]] = {out_fd: [], err_fd: []}
    open_fds = set(chunks)
    timed_out = False
    with selectors.DefaultSelector() as selector:
        for fd in open_fds:
            selector.register(fd, selectors.EVENT_READ)
        while open_fds:
            left = deadline - time.monotonic()
            if left <= 0:
                if timed_out:
                    break
                timed_out = True
                _kill(process)
                deadline = time.monotonic() + _DRAIN_SECONDS
                continue
            for key, _ in selector.select(timeout=left):
                fd = int(key.fd)
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    selector.unregister(fd)
                    open_fds.discard(fd)
    process.stdout.close()
    process.stderr.close()
    try:
        process.wait(timeout=_DRAIN_SECONDS)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill(process)
        process.wait()
    return b"".join(chunks[out_fd]), b"".join(chunks[err_fd]), timed_out


def _kill(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(ProcessLookupError):
        process.kill()


def _plan_hiding(
    folder: Path, keep: Sequence[Path], dirs: list[str], files: list[str], depth: int = 0
) -> None:
    """Hide `folder`; when something the sandbox needs (the interpreter, this package, its
    work folder) lies inside it, hide every sibling along the way to it instead."""
    inside = [k for k in keep if k == folder or folder in k.parents]
    if not inside:
        dirs.append(str(folder))
        return
    if any(k == folder for k in inside) or depth > 16:
        return
    for child in sorted(folder.iterdir()):
        if child.is_symlink():
            continue
        if child.is_dir():
            _plan_hiding(child, keep, dirs, files, depth + 1)
        elif child.is_file():
            files.append(str(child))
