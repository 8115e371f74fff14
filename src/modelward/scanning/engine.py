"""The scan engine: walks a bundle, sniffs each file, runs its format's scanner, builds a report.

Every regular file is scanned; a link that leaves the bundle, a special file (FIFO, device) or a
file whose format is not recognised becomes a finding, never a silent pass. Files are memory
mapped read-only; nothing read is imported, unpickled, rendered or executed. Unexpected errors
inside a format scanner are contained to that file and reported as `malformed`.

Each file's result records the sha256 of the bytes scanned: computed from the mapped file (a file
that changes while it is scanned is reported), or taken from the caller, who may already have
hashed the same bytes (`scan_inputs` for bytes in hand, `sha256=` for files that cannot change,
such as staged content-addressed blobs).
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import posixpath
import stat
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from modelward.errors import InputError, PathError
from modelward.scanning.allowlist import AllowList, configured_allow
from modelward.scanning.archives import scan_compressed, scan_tar, scan_zip
from modelward.scanning.context import Limits, ScanContext, at
from modelward.scanning.gguf import check_template, scan_gguf
from modelward.scanning.keras import scan_hdf5
from modelward.scanning.numpy_formats import scan_npy
from modelward.scanning.onnx import scan_onnx
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.pickles import scan_pickle_stream, scan_torch_legacy
from modelward.scanning.report import FileResult, Finding, ScanReport
from modelward.scanning.safetensors import scan_safetensors
from modelward.scanning.sniff import sniff
from modelward.scanning.zipfmt import unsafe_member_path

MAX_FILES = 1_000_000
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class ScanInput:
    """One file given by its bytes: its path in the bundle, the bytes, and, when the caller has
    already hashed exactly these bytes, their sha256 (64 lowercase hex digits)."""

    path: str
    data: Buffer | memoryview
    sha256: str | None = None


def scan(
    path: str | os.PathLike[str],
    *,
    numeric: bool = False,
    allow: Iterable[str] = (),
    use_config: bool = True,
    limits: Limits | None = None,
    sha256: Mapping[str, str] | None = None,
    digests: bool = True,
) -> ScanReport:
    """Scan one file or one bundle directory; see `scan_paths`."""
    return scan_paths(
        [path], numeric=numeric, allow=allow, use_config=use_config, limits=limits,
        sha256=sha256,
    )  # fmt: skip


def scan_paths(
    paths: Sequence[str | os.PathLike[str]],
    *,
    numeric: bool = False,
    allow: Iterable[str] = (),
    use_config: bool = True,
    limits: Limits | None = None,
    sha256: Mapping[str, str] | None = None,
    digests: bool = True,
) -> ScanReport:
    """Scan files and directories; raise PathError if a given path does not exist.

    `sha256` maps report paths to digests the caller computed over the same bytes; those are
    recorded instead of hashing the file again, so pass only digests of files that cannot have
    changed since (a staged, content-addressed blob). Every other file is hashed here.
    `digests` is accepted for older callers only: every report records every file's sha256.
    """
    del digests
    known = _checked_digests(sha256)
    allow_list, extra = _allow_list(allow, use_config)
    limits = limits or Limits()
    entries = list(_collect(paths))
    results: dict[str, FileResult] = {}
    contexts: dict[str, ScanContext] = {}
    for display, real in entries:
        result, ctx = _scan_entry(display, real, allow_list, numeric, limits, known.get(display))
        results[display] = result
        if ctx is not None:
            contexts[display] = ctx
    _resolve_external_data(results, contexts, dict(entries))
    return _report(results, numeric, extra)


def scan_inputs(
    inputs: Iterable[ScanInput],
    *,
    numeric: bool = False,
    allow: Iterable[str] = (),
    use_config: bool = True,
    limits: Limits | None = None,
) -> ScanReport:
    """Scan files given as bytes (for example blobs already read to be stored), one report.

    A file's sha256 is the one given with it, or computed from its bytes. Paths must be unique,
    relative POSIX paths; an ONNX file's external data must be among the inputs.
    """
    allow_list, extra = _allow_list(allow, use_config)
    limits = limits or Limits()
    results: dict[str, FileResult] = {}
    contexts: dict[str, ScanContext] = {}
    for item in inputs:
        if item.path in results or unsafe_member_path(item.path):
            raise InputError(f"scan input path {item.path!r} is not a unique relative path")
        digest = _checked_digests({item.path: item.sha256} if item.sha256 is not None else None)
        data = item.data
        if not isinstance(data, bytes | bytearray | mmap.mmap):
            data = bytes(data)  # a memoryview, say: the parsers need find and rfind
        ctx = _context(item.path, allow_list, numeric, limits)
        fmt = scan_buffer(ctx, data, "")
        sha = digest.get(item.path) or _digest(data)
        results[item.path] = FileResult(item.path, fmt, len(data), sha, tuple(ctx.findings))
        contexts[item.path] = ctx
    _resolve_external_data(results, contexts, {})
    return _report(results, numeric, extra)


def _allow_list(allow: Iterable[str], use_config: bool) -> tuple[AllowList, tuple[str, ...]]:
    extra = tuple(allow) + (configured_allow() if use_config else ())
    return AllowList.default(extra), extra


def _report(results: dict[str, FileResult], numeric: bool, extra: tuple[str, ...]) -> ScanReport:
    return ScanReport(
        files=tuple(results.values()),
        scanner_version=_version(),
        numeric=numeric,
        allow=tuple(sorted(set(extra))),
    )


def _checked_digests(given: Mapping[str, str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for path, digest in (given or {}).items():
        if not isinstance(digest, str) or len(digest) != 64 or not set(digest) <= _HEX:
            raise InputError(f"the sha256 given for {path!r} is not 64 lowercase hex digits")
        out[path] = digest
    return out


def _context(display: str, allow: AllowList, numeric: bool, limits: Limits) -> ScanContext:
    ctx = ScanContext(allow=allow, file=display, numeric=numeric, limits=limits)
    ctx.scan_nested = scan_buffer
    return ctx


def _collect(paths: Sequence[str | os.PathLike[str]]) -> Iterator[tuple[str, Path]]:
    many = len(paths) > 1
    count = 0
    for given in paths:
        root = Path(given)
        try:
            info = root.lstat()
        except OSError as exc:
            raise PathError(f"cannot scan {str(given)!r}: {exc.strerror or exc}") from exc
        if not stat.S_ISDIR(info.st_mode):
            yield (str(given) if many else root.name or str(given)), root
            continue
        prefix = root.as_posix().rstrip("/") + "/" if many else ""
        for folder, dirs, files in os.walk(root, followlinks=False):
            dirs.sort()
            base = Path(folder)
            for name in sorted(files) + [d for d in dirs if (base / d).is_symlink()]:
                count += 1
                if count > MAX_FILES:
                    raise PathError(f"{given} holds more than {MAX_FILES} files")
                full = base / name
                yield prefix + full.relative_to(root).as_posix(), full


def _scan_entry(
    display: str, real: Path, allow: AllowList, numeric: bool, limits: Limits, known: str | None
) -> tuple[FileResult, ScanContext | None]:
    def single(fmt: str, size: int, rule_id: str, message: str) -> tuple[FileResult, None]:
        finding = Finding(rule_id=rule_id, file=display, location="", message=message)
        return FileResult(display, fmt, size, None, (finding,)), None

    try:
        info = real.lstat()
    except OSError as exc:
        return single("unreadable", 0, "MW-FMT-UNREADABLE", f"cannot read the file: {exc}")
    if stat.S_ISLNK(info.st_mode):
        target = os.readlink(real)
        return single(
            "link", 0, "MW-FMT-LINK", f"the file is a symbolic link to {target!r}; "
            "links are not followed (a loader would read whatever it points to)",
        )  # fmt: skip
    if not stat.S_ISREG(info.st_mode):
        return single("special", 0, "MW-FMT-LINK", "the entry is a device, FIFO or socket")
    ctx = _context(display, allow, numeric, limits)
    try:
        fd = os.open(real, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        return single("unreadable", info.st_size, "MW-FMT-UNREADABLE", f"cannot open: {exc}")
    try:
        before = os.fstat(fd)
        size = before.st_size
        if size == 0:
            fmt = scan_buffer(ctx, b"", "")
            digest = known or _digest(b"")
        else:
            with mmap.mmap(fd, size, access=mmap.ACCESS_READ) as mapped:
                fmt = scan_buffer(ctx, mapped, "")
                digest = known or _digest(mapped)
        after = os.fstat(fd)
    except OSError as exc:
        return single("unreadable", info.st_size, "MW-FMT-UNREADABLE", f"cannot read: {exc}")
    finally:
        os.close(fd)
    if _stamp(before) != _stamp(after):
        # a mapped file shows writes made while it is scanned; what was scanned is unknown
        ctx.add("MW-FMT-UNREADABLE", "", "the file changed while it was being scanned")
    return FileResult(display, fmt, size, digest, tuple(ctx.findings)), ctx


def _stamp(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns


def _digest(data: Buffer) -> str:
    hasher = hashlib.sha256()
    step = 16 << 20
    view = memoryview(data)  # slices of a view are not copies
    try:
        for offset in range(0, len(view), step):
            hasher.update(view[offset : offset + step])
    finally:
        view.release()
    return hasher.hexdigest()


def scan_buffer(ctx: ScanContext, data: Buffer, where: str) -> str:
    """Sniff `data` and run its scanner; returns the format name. Never raises."""
    try:
        return _dispatch(ctx, data, where)
    except (RecursionError, MemoryError):
        ctx.add("MW-FMT-LIMIT", where, "the file is nested too deeply or too large to check")
    except Exception as exc:  # a scanner bug must not pass a file: report it, fail closed
        ctx.add(
            "MW-FMT-UNREADABLE",
            where,
            f"the scanner could not finish this file ({type(exc).__name__}: {exc})",
        )
    return "unknown"


def _dispatch(ctx: ScanContext, data: Buffer, where: str) -> str:
    fmt = sniff(data)
    if fmt == "empty":
        ctx.add("MW-FMT-EMPTY", where, "the file is empty; no loader accepts it")
    elif fmt == "pickle":
        scan_pickle_stream(data, ctx, where)
    elif fmt == "torch-legacy":
        scan_torch_legacy(data, ctx, where)
    elif fmt == "zip":
        return scan_zip(data, ctx, where)
    elif fmt == "npy":
        scan_npy(data, ctx, where)
    elif fmt == "safetensors":
        scan_safetensors(data, ctx, where)
        if data[0] == 0x80 and _imports_something(data):
            # a header length whose first byte is 0x80 also reads as a pickle; if that pickle
            # imports anything, the file is a polyglot and pickle loaders must be considered
            scan_pickle_stream(data, ctx, where)
    elif fmt == "gguf":
        scan_gguf(data, ctx, where)
    elif fmt == "hdf5":
        scan_hdf5(data, ctx, where)
    elif fmt == "onnx":
        scan_onnx(data, ctx, where)
    elif fmt == "tar":
        return scan_tar(data, ctx, where)
    elif fmt in ("gzip", "bz2", "xz", "zlib"):
        return scan_compressed(data, ctx, where, fmt)
    elif fmt in ("json", "text"):
        return _scan_text(data, ctx, where, fmt)
    elif fmt == "native":
        ctx.add(
            "MW-CODE-NATIVE",
            where,
            "the file is compiled code (an executable or shared library); loading the bundle "
            "may run it with the loader's privileges",
        )
    else:
        ctx.add(
            "MW-FMT-UNKNOWN",
            where,
            "the file's format is not recognised, so it cannot be shown to be safe",
        )
    return fmt


def _imports_something(data: Buffer) -> bool:
    from modelward.scanning.allowlist import AllowList
    from modelward.scanning.pickle_vm import PickleMachine

    return bool(PickleMachine(data, AllowList(frozenset())).run_one().globals)


def _scan_text(data: Buffer, ctx: ScanContext, where: str, fmt: str) -> str:
    if len(data) > ctx.limits.max_json_bytes:
        return fmt
    text = bytes(data).decode("utf-8-sig", "replace")
    if fmt == "json":
        try:
            document = json.loads(text)
        except (ValueError, RecursionError):
            fmt = "text"
        else:
            if isinstance(document, dict):
                _check_chat_templates(document, ctx, where)
            return fmt
    if "{%" in text or "{{" in text:
        from modelward.scanning.templates import TemplateSyntaxProblem, template_problems

        try:
            problems = template_problems(text)
        except TemplateSyntaxProblem:
            return fmt
        for problem in problems:
            ctx.add("MW-TPL-UNSAFE", at(where, "template"), f"the template {problem}")
        return "jinja" if problems or "{%" in text else fmt
    return fmt


def _check_chat_templates(document: dict[str, object], ctx: ScanContext, where: str) -> None:
    template = document.get("chat_template")
    if isinstance(template, str):
        check_template(template, ctx, at(where, "chat_template"), "MW-TPL-UNSAFE")
    elif isinstance(template, list):
        for entry in template[:100]:
            if isinstance(entry, dict) and isinstance(entry.get("template"), str):
                name = entry.get("name", "?")
                check_template(
                    entry["template"], ctx, at(where, f"chat_template {name}"), "MW-TPL-UNSAFE"
                )


def _resolve_external_data(
    results: dict[str, FileResult], contexts: dict[str, ScanContext], reals: dict[str, Path]
) -> None:
    for display, ctx in contexts.items():
        added: list[Finding] = []
        for _where, location, offset, length in ctx.external_refs:
            target = posixpath.normpath(posixpath.join(posixpath.dirname(display), location))
            where = f"external data {location!r}"
            if target.startswith("../") or target == "..":
                added.append(Finding("MW-ONNX-EXTERNAL", display, where,
                                     "the external data location leaves the bundle"))  # fmt: skip
                continue
            size = None
            if target in results:
                result = results[target]
                size = result.size
                if result.format == "unknown":
                    kept = tuple(f for f in result.findings if f.rule_id != "MW-FMT-UNKNOWN")
                    results[target] = replace(result, format="onnx-external-data", findings=kept)
            elif display in reals:
                candidate = reals[display].parent / location
                if candidate.is_file() and not candidate.is_symlink():
                    size = candidate.stat().st_size
            if size is None:
                added.append(Finding("MW-ONNX-STRUCTURE", display, where,
                                     "the external data file is missing"))  # fmt: skip
            elif offset < 0 or (length >= 0 and offset + length > size):
                added.append(Finding("MW-ONNX-STRUCTURE", display, where,
                                     "the external data range is outside its file"))  # fmt: skip
        if added:
            result = results[display]
            results[display] = replace(result, findings=result.findings + tuple(added))


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelward")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"
