"""Running untrusted model code (a probe loading a model) in a sandbox.

`run_sandboxed` starts the command under `unshare --user --map-root-user --net --mount`:

- network: a new network namespace with only a loopback interface that is down, so any
  connect() fails (no route), whatever proxies or addresses the code tries;
- files: every mount is remounted read-only (the bundle copy included), the folders in `hide`
  (the registry's home with its keys, the invoking user's home) are covered by empty tmpfs
  mounts, and the command's only writable place is a small scratch tmpfs, which is also its
  HOME and TMPDIR;
- limits: RLIMIT_AS (memory), RLIMIT_CPU (CPU seconds), RLIMIT_FSIZE (file size), no core
  dumps, and a wall-clock timeout after which the whole process group is killed;
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
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import DeniedError, InputError

_NAMESPACES = ("--user", "--map-root-user", "--net", "--mount")


@dataclass(frozen=True)
class SandboxLimits:
    memory_bytes: int = 8 * 1024**3
    cpu_seconds: int = 1800
    wall_seconds: float = 1800.0
    scratch_bytes: int = 256 * 1024**2

    def to_dict(self) -> dict[str, float]:
        return {
            "memory_bytes": self.memory_bytes,
            "cpu_seconds": self.cpu_seconds,
            "wall_seconds": self.wall_seconds,
            "scratch_bytes": self.scratch_bytes,
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
    if not limits.wall_seconds > 0 or limits.cpu_seconds < 1 or limits.memory_bytes < 2**26:
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
        try:
            out, err = process.communicate(timeout=limits.wall_seconds)
            timed_out = False
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            out, err = process.communicate()
            timed_out = True
    return SandboxResult(process.returncode, out, err.decode(errors="replace"), timed_out)


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
