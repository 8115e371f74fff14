"""The first code run inside a probe sandbox (new user, mount and network namespaces made by
`unshare`): it makes every mount read-only, hides the folders named in its spec under empty
tmpfs mounts, gives the command one writable scratch tmpfs, sets the resource limits and then
executes the command with the scrubbed environment. Reads its spec from the file named by
argv[1]; writes nothing but to stderr when a step fails (and then exits 126 without running the
command: no half-isolated run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import sys

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_SKIP = ("/proc", "/sys", "/dev")


def _mount(
    libc: ctypes.CDLL,
    source: str | None,
    target: str,
    fstype: str | None,
    flags: int,
    data: str | None,
) -> None:
    rc = libc.mount(
        source.encode() if source else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"mount {target}: {os.strerror(errno)}")


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as handle:
        for line in handle:
            point = line.split()[4].replace("\\040", " ")
            if any(point == s or point.startswith(s + "/") for s in _SKIP):
                continue
            points.append(point)
    return sorted(set(points), key=len)


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    try:
        for point in _mount_points():
            flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | _MS_NODEV
            try:
                _mount(libc, None, point, None, flags, None)
            except OSError:
                # locked flags (nosuid/nodev) can differ per mount; read-only is what matters
                _mount(libc, None, point, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
        for hidden in spec["hide"]:
            if os.path.isdir(hidden):
                flags = _MS_RDONLY | _MS_NOSUID | _MS_NODEV
                _mount(libc, "tmpfs", hidden, "tmpfs", flags, "size=4k,mode=000")
        for hidden_file in spec["hide_files"]:
            _mount(libc, spec["empty"], hidden_file, None, _MS_BIND, None)
            _mount(libc, None, hidden_file, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
        scratch = spec["scratch"]
        _mount(
            libc,
            "tmpfs",
            scratch,
            "tmpfs",
            _MS_NOSUID | _MS_NODEV,
            f"size={int(spec['scratch_bytes'])},mode=700",
        )
        for limit, value in (
            (resource.RLIMIT_AS, spec["memory_bytes"]),
            (resource.RLIMIT_CPU, spec["cpu_seconds"]),
            (resource.RLIMIT_FSIZE, spec["scratch_bytes"]),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(limit, (int(value), int(value)))
    except (OSError, ValueError, KeyError) as exc:
        print(f"modelward sandbox: cannot isolate the probe: {exc}", file=sys.stderr)
        return 126
    os.chdir(scratch)
    command = [str(c) for c in spec["command"]]
    os.execve(command[0], command, {str(k): str(v) for k, v in spec["env"].items()})
    return 126  # pragma: no cover - execve does not return


if __name__ == "__main__":
    sys.exit(main())
