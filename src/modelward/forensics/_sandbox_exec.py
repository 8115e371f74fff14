"""The first code run inside a probe sandbox (new user, mount, network and PID namespaces made
by `unshare`, this process being the PID namespace's init): it makes every mount read-only,
hides the folders named in its spec under empty tmpfs mounts and gives the command one writable
scratch tmpfs. Then it forks the command's process, which

- enters a nested user and mount namespace, so every mount made here is locked (it cannot be
  unmounted to uncover what it hides, nor remounted read-write, even with capabilities);
- sets the resource limits (memory, CPU, file size, processes, no core dumps);
- drops every capability (bounding, ambient, effective, permitted, inheritable) and sets
  no_new_privs, so neither the command nor anything it executes can mount, unmount or regain
  privileges;
- executes the command with the scrubbed environment.

This init process stays behind, reaps orphans, and exits with the command's status once the
command exits; the kernel then kills every process left in the PID namespace (daemons
included). Reads its spec from the file named by argv[1]; writes nothing but to stderr when a
step fails (and then exits 126 without running the command: no half-isolated run).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import resource
import sys
from typing import Any

_MS_RDONLY = 1
_MS_NOSUID = 2
_MS_NODEV = 4
_MS_REMOUNT = 32
_MS_BIND = 4096
_MS_REC = 16384
_SKIP = ("/proc",)  # a fresh proc of this PID namespace (unshare --mount-proc)
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_SETUP_FAILED = 126


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


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


def _check(rc: int, what: str) -> None:
    if rc != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def _lock_mounts(libc: ctypes.CDLL) -> None:
    """Enter a nested user and mount namespace: the mounts copied into it are locked
    (MNT_LOCKED, read-only locked), so no capability in it can undo them."""
    uid, gid = os.geteuid(), os.getegid()
    _check(libc.unshare(ctypes.c_int(_CLONE_NEWUSER | _CLONE_NEWNS)), "unshare")
    with open("/proc/self/setgroups", "w", encoding="ascii") as handle:
        handle.write("deny")
    with open("/proc/self/uid_map", "w", encoding="ascii") as handle:
        handle.write(f"{uid} {uid} 1")
    with open("/proc/self/gid_map", "w", encoding="ascii") as handle:
        handle.write(f"{gid} {gid} 1")


def _drop_capabilities(libc: ctypes.CDLL) -> None:
    """Empty every capability set and forbid gaining privileges through execve."""
    cap = 0
    while libc.prctl(ctypes.c_int(_PR_CAPBSET_DROP), ctypes.c_ulong(cap), 0, 0, 0) == 0:
        cap += 1
    if ctypes.get_errno() != 22 or cap < 32:  # EINVAL past the last capability
        raise OSError(ctypes.get_errno(), "cannot drop the capability bounding set")
    _check(
        libc.prctl(
            ctypes.c_int(_PR_CAP_AMBIENT), ctypes.c_ulong(_PR_CAP_AMBIENT_CLEAR_ALL), 0, 0, 0
        ),
        "clear ambient capabilities",
    )
    header = _CapHeader(_LINUX_CAPABILITY_VERSION_3, 0)
    data = (_CapData * 2)()
    _check(libc.capset(ctypes.byref(header), ctypes.byref(data)), "capset")
    _check(
        libc.prctl(ctypes.c_int(_PR_SET_NO_NEW_PRIVS), ctypes.c_ulong(1), 0, 0, 0),
        "no_new_privs",
    )
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            key, _, value = line.partition(":")
            if key in ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb") and int(value, 16):
                raise OSError(1, f"{key} still holds capabilities")


def _isolate(spec: dict[str, Any], libc: ctypes.CDLL) -> None:
    # one nested user namespace (the command's own, made below) and no more: the command cannot
    # make another one to regain capabilities in
    with open("/proc/sys/user/max_user_namespaces", "w", encoding="ascii") as handle:
        handle.write("1")
    for point in _mount_points():
        # device nodes stay usable under /dev (/dev/null, /dev/urandom: torch opens them),
        # read-only; everywhere else no device node opens at all
        devices = point == "/dev" or point.startswith("/dev/")
        flags = _MS_REMOUNT | _MS_BIND | _MS_RDONLY | _MS_NOSUID | (0 if devices else _MS_NODEV)
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
        _mount(libc, str(spec["empty"]), hidden_file, None, _MS_BIND, None)
        _mount(libc, None, hidden_file, None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY, None)
    _mount(
        libc,
        "tmpfs",
        str(spec["scratch"]),
        "tmpfs",
        _MS_NOSUID | _MS_NODEV,
        f"size={int(spec['scratch_bytes'])},mode=700",
    )


def _become_command(spec: dict[str, Any], libc: ctypes.CDLL) -> None:
    """In the forked child: lock, limit, drop, exec. Never returns."""
    try:
        _lock_mounts(libc)
        for limit, value in (
            (resource.RLIMIT_AS, spec["memory_bytes"]),
            (resource.RLIMIT_CPU, spec["cpu_seconds"]),
            (resource.RLIMIT_FSIZE, spec["scratch_bytes"]),
            (resource.RLIMIT_NPROC, spec["max_processes"]),
            (resource.RLIMIT_CORE, 0),
        ):
            resource.setrlimit(limit, (int(value), int(value)))
        _drop_capabilities(libc)
        os.chdir(str(spec["scratch"]))
        command = [str(c) for c in spec["command"]]
        env = {str(k): str(v) for k, v in spec["env"].items()}
        os.execve(command[0], command, env)
    except (OSError, ValueError, KeyError) as exc:
        print(f"modelward sandbox: cannot isolate the probe: {exc}", file=sys.stderr)
    finally:
        os._exit(_SETUP_FAILED)


def _wait_as_init(child: int) -> int:
    """Reap every process re-parented to this init until the command exits; return its
    exit code (128 + signal when killed, like a shell)."""
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            return _SETUP_FAILED
        except InterruptedError:  # pragma: no cover - PEP 475 retries
            continue
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return 128 - code if code < 0 else code


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as handle:
        spec = json.load(handle)
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    if os.getpid() != 1:
        print("modelward sandbox: not the init of a new PID namespace", file=sys.stderr)
        return _SETUP_FAILED
    try:
        _isolate(spec, libc)
    except (OSError, ValueError, KeyError) as exc:
        print(f"modelward sandbox: cannot isolate the probe: {exc}", file=sys.stderr)
        return _SETUP_FAILED
    sys.stdout.flush()
    sys.stderr.flush()
    child = os.fork()
    if child == 0:
        _become_command(spec, libc)
    os.closerange(3, 1024)
    # returning makes this init exit, and the kernel kills whatever is left in the namespace
    return _wait_as_init(child)


if __name__ == "__main__":
    sys.exit(main())
