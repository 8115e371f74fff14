"""Container scanners: zip (PyTorch, NumPy npz, Keras, plain), tar, and compressed streams.

Each container is parsed the way its loader parses it (see `zipfmt` for zip), then every member
is scanned: pickles in PyTorch archives with PyTorch's persistent ids, `.npy` members as arrays,
Keras configs for Lambda layers and custom objects, anything else by sniffing its bytes. Raw
storage members of PyTorch archives are not sniffed (they are numbers), but their sizes are
checked against what the pickle references. Decompression is always bounded.
"""

from __future__ import annotations

import bz2
import io
import lzma
import stat
import tarfile
import zlib
from collections.abc import Callable
from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.keras import scan_keras_config
from modelward.scanning.numeric import sweep_tensor
from modelward.scanning.numpy_formats import scan_npy
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.pickle_vm import PICKLE_OPCODES
from modelward.scanning.pickles import STORAGE_DTYPE, TorchStorages, scan_pickle_stream
from modelward.scanning.zipfmt import ZipMember, read_member, read_zip, unsafe_member_path


def scan_zip(data: Buffer, ctx: ScanContext, where: str) -> str:
    members = read_zip(data, ctx, where)
    if members is None:
        return "zip"
    files = [m for m in members if not m.is_dir]
    names = {m.name for m in files}
    pickles = [m for m in files if _torch_pickle_name(m.name)]
    pt2_prefix = _pt2_prefix(data, files, ctx, where)
    if pt2_prefix is not None:
        _scan_pt2(data, pt2_prefix, files, ctx, where)
        return "pt2"
    if pickles:
        _scan_torch_zip(data, members[0].name, files, ctx, where)
        return "torch-zip"
    if files and all(m.name.endswith(".npy") for m in files):
        for member in files:
            content = _member_bytes(data, member, ctx, where)
            if content is not None:
                scan_npy(content, ctx, at(where, member.name))
        return "npz"
    if "config.json" in names and ("metadata.json" in names or "model.weights.h5" in names):
        for member in files:
            content = _member_bytes(data, member, ctx, where)
            if content is None:
                continue
            if member.name == "config.json":
                scan_keras_config(content, ctx, at(where, member.name))
            else:
                ctx.nested(content, at(where, member.name))
        return "keras"
    for member in files:
        content = _member_bytes(data, member, ctx, where)
        if content is not None:
            ctx.nested(content, at(where, member.name))
    return "zip"


# torch.export archives (`torch.export.save`, `.pt2`): raw tensor bytes under data/weights and
# data/constants, named by a JSON config beside them; the graph is JSON (models/*.json).
_PT2_RAW_DIRS = ("data/weights", "data/constants")
_PT2_CONFIGS = {
    "data/weights": "model_weights_config.json",
    "data/constants": "model_constants_config.json",
}
_PT2_DTYPE_BYTES = {  # torch._export.serde.schema.ScalarType -> element size in bytes
    1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 2, 7: 4, 8: 8, 9: 4, 10: 8, 11: 16, 12: 1, 13: 2,
    28: 2, 29: 1, 30: 1, 31: 1, 32: 1, 33: 1, 34: 4, 35: 8,
}  # fmt: skip


def _pt2_prefix(data: Buffer, files: list[ZipMember], ctx: ScanContext, where: str) -> str | None:
    """The archive's folder if it is a torch.export archive (`PREFIX/archive_format` says
    `pt2`), else None."""
    for member in files:
        parts = member.name.split("/")
        if len(parts) == 2 and parts[1] == "archive_format" and member.size <= 16:
            content = read_member(data, member, ctx, where)
            if content is not None and content.strip() == b"pt2":
                return parts[0]
    return None


def _scan_pt2(
    data: Buffer, prefix: str, files: list[ZipMember], ctx: ScanContext, where: str
) -> None:
    by_name = {m.name: m for m in files}
    raw: dict[str, int | None] = {}  # member name -> expected byte count (None: unknown)
    pickled: set[str] = set()
    for folder, config_name in _PT2_CONFIGS.items():
        member = by_name.get(f"{prefix}/{folder}/{config_name}")
        if member is None:
            continue
        content = _member_bytes(data, member, ctx, where)
        entries = _pt2_config_entries(content, ctx, at(where, member.name))
        for path_name, use_pickle, nbytes in entries:
            name = f"{prefix}/{folder}/{path_name}"
            if use_pickle:
                pickled.add(name)
            else:
                raw[name] = nbytes
    for member in files:
        location = at(where, member.name)
        if member.name in raw:
            expected = raw[member.name]
            ctx.expanded += member.size
            if expected is not None and member.size < expected:
                ctx.add(
                    "MW-PT2-WEIGHTS",
                    location,
                    f"holds {member.size} bytes but its tensor needs {expected}",
                )
            continue  # raw numbers, never parsed or executed by the loader
        content = _member_bytes(data, member, ctx, where)
        if content is not None:
            ctx.nested(content, location)  # JSON graph, pickled constants, sample inputs


def _pt2_config_entries(
    content: bytes | None, ctx: ScanContext, where: str
) -> list[tuple[str, bool, int | None]]:
    import json

    if content is None:
        return []
    try:
        config = json.loads(content).get("config")
    except (ValueError, AttributeError, UnicodeDecodeError):
        config = None
    if not isinstance(config, dict):
        ctx.add("MW-PT2-WEIGHTS", where, "the weights config is not a JSON object with 'config'")
        return []
    entries = []
    for name, entry in config.items():
        path_name = entry.get("path_name") if isinstance(entry, dict) else None
        if not isinstance(path_name, str) or "/" in path_name or path_name in ("", ".", ".."):
            ctx.add("MW-PT2-WEIGHTS", where, f"entry {name!r} has no usable path_name")
            continue
        entries.append((path_name, bool(entry.get("use_pickle")), _pt2_nbytes(entry)))
    return entries


def _pt2_nbytes(entry: dict[str, object]) -> int | None:
    meta = entry.get("tensor_meta")
    if not isinstance(meta, dict):
        return None
    size = _PT2_DTYPE_BYTES.get(meta.get("dtype"))  # type: ignore[arg-type]
    sizes, strides = meta.get("sizes"), meta.get("strides")
    if size is None or not isinstance(sizes, list) or not isinstance(strides, list):
        return None
    try:
        dims = [int(d["as_int"]) for d in sizes]
        steps = [int(d["as_int"]) for d in strides]
        offset = int(meta.get("storage_offset", {}).get("as_int", 0))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    if any(d == 0 for d in dims):
        return 0
    span = 1 + sum((d - 1) * s for d, s in zip(dims, steps, strict=False))
    return (offset + span) * size


def _torch_pickle_name(name: str) -> bool:
    parts = name.split("/")
    return len(parts) >= 2 and fold_case(parts[-1]).endswith(".pkl")


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def fold_case(name: str) -> str:
    """A member name as miniz compares names when torch looks one up: ASCII letters folded."""
    return name.translate(_ASCII_LOWER)


def _member_bytes(data: Buffer, member: ZipMember, ctx: ScanContext, where: str) -> bytes | None:
    ctx.expanded += member.size
    if ctx.expanded > ctx.limits.max_total_expanded:
        ctx.add("MW-ARC-BOMB", at(where, member.name), "the bundle expands beyond the limit")
        return None
    return read_member(data, member, ctx, where)


def _scan_torch_zip(
    data: Buffer, first_name: str, files: list[ZipMember], ctx: ScanContext, where: str
) -> None:
    # torch's reader takes the archive's folder name from the first entry of the directory, and
    # finds records by name through miniz, which ignores the case of ASCII letters.
    prefix = first_name.split("/")[0]
    by_name: dict[str, ZipMember] = {}
    for member in files:
        folded = fold_case(member.name)
        if folded in by_name and by_name[folded].name != member.name:
            ctx.add(
                "MW-ARC-DUPLICATE",
                at(where, member.name),
                f"the member's name differs from {by_name[folded].name!r} only in letter case; "
                "torch.load looks names up ignoring case and may read either",
            )
        by_name.setdefault(folded, member)
    if fold_case(f"{prefix}/data.pkl") not in by_name:
        ctx.add(
            "MW-TORCH-NO-PICKLE",
            where,
            f"the archive has no {prefix}/data.pkl, which torch.load reads first",
        )
    storages = TorchStorages(ctx, where, legacy=False)
    storage_members: dict[str, ZipMember] = {}
    for member in files:
        location = at(where, member.name)
        parts = fold_case(member.name).split("/")
        if len(parts) == 3 and parts[1] == "data" and parts[0] == fold_case(prefix):
            storage_members[parts[2]] = member
            continue
        content = _member_bytes(data, member, ctx, where)
        if content is None:
            continue
        if fold_case(member.name).endswith(".pkl") or (
            content and content[0] in PICKLE_OPCODES and _sniffs_as_pickle(content)
        ):
            storages.where = location
            scan_pickle_stream(content, ctx, location, persistent_load=storages)
        else:
            ctx.nested(content, location)
    for key, (type_name, nbytes) in sorted(storages.storages.items()):
        storage = storage_members.get(fold_case(key))
        location = at(where, f"{prefix}/data/{key}")
        if storage is None:
            ctx.add("MW-TORCH-STORAGE", location, f"storage {key} is referenced but missing")
            continue
        if storage.size < nbytes:
            ctx.add(
                "MW-TORCH-STORAGE",
                location,
                f"storage {key} holds {storage.size} bytes but {nbytes} are referenced",
            )
            continue
        dtype = STORAGE_DTYPE.get(type_name)
        if ctx.numeric and dtype is not None and storage.method == 0:
            view = memoryview(data)[storage.data_offset : storage.data_offset + nbytes]
            try:
                sweep_tensor(view, dtype, f"{prefix}/data/{key}", ctx, location)
            finally:
                view.release()


def _sniffs_as_pickle(content: bytes) -> bool:
    from modelward.scanning.sniff import sniff

    return sniff(content) == "pickle"


def scan_tar(data: Buffer, ctx: ScanContext, where: str) -> str:
    count = 0
    total = 0
    seen: set[str] = set()
    try:
        with tarfile.open(fileobj=_BufferReader(data), mode="r:") as archive:
            for member in archive:
                count += 1
                if count > ctx.limits.max_members:
                    ctx.add("MW-ARC-BOMB", where, "the archive has more members than the limit")
                    break
                location = at(where, member.name)
                problem = unsafe_member_path(member.name.rstrip("/") or member.name)
                if problem:
                    ctx.add("MW-ARC-PATH", location, f"the member path {problem}")
                if member.name in seen:
                    ctx.add("MW-ARC-DUPLICATE", location, "two members share this name")
                seen.add(member.name)
                if member.issym() or member.islnk():
                    ctx.add(
                        "MW-ARC-LINK",
                        location,
                        f"the member is a link to {member.linkname!r}",
                    )
                    continue
                if member.isdev() or (
                    not member.isfile() and not member.isdir() and stat.S_IFMT(member.mode)
                ):
                    ctx.add("MW-ARC-LINK", location, "the member is a device or special file")
                    continue
                if not member.isfile():
                    continue
                total += member.size
                ctx.expanded += member.size
                if member.size > ctx.limits.max_in_memory or total > ctx.limits.max_total_expanded:
                    ctx.add("MW-ARC-BOMB", location, f"the member claims {member.size} bytes")
                    continue
                handle = archive.extractfile(member)
                if handle is None:
                    continue
                content = handle.read()
                ctx.nested(content, location)
    except (tarfile.TarError, EOFError, OSError, ValueError, UnicodeError) as exc:
        ctx.add("MW-TAR-STRUCTURE", where, f"the tar archive cannot be read: {exc}")
    return "tar"


def scan_compressed(data: Buffer, ctx: ScanContext, where: str, kind: str) -> str:
    limit = min(ctx.limits.max_in_memory, max(ctx.limits.max_ratio * len(data), 16 << 20))
    try:
        out, too_big = _decompress(bytes(data), kind, limit + 1, ctx.limits.max_ratio)
    except (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError) as exc:
        ctx.add("MW-TAR-STRUCTURE", where, f"the {kind} stream does not decompress: {exc}")
        return kind
    if too_big:
        ctx.add("MW-ARC-BOMB", where, f"the {kind} stream expands beyond {limit} bytes")
        return kind
    ctx.expanded += len(out)
    if ctx.expanded > ctx.limits.max_total_expanded:
        ctx.add("MW-ARC-BOMB", where, "the bundle expands beyond the limit")
        return kind
    inner = ctx.nested(out, at(where, f"{kind} content"))
    return f"{kind}+{inner}"


def _decompress(raw: bytes, kind: str, max_out: int, ratio: int) -> tuple[bytes, bool]:
    """Decompress every member of the stream, stopping early once output passes `max_out` or
    grows faster than `ratio` times the input consumed (past a 4 MiB floor)."""
    chunks: list[bytes] = []
    produced = 0
    factory: Callable[[], Any] = {
        "gzip": lambda: zlib.decompressobj(31),
        "zlib": lambda: zlib.decompressobj(15),
        "bz2": bz2.BZ2Decompressor,
        "xz": lzma.LZMADecompressor,
    }[kind]
    view = memoryview(raw)
    consumed = 0
    while consumed < len(raw) and produced < max_out:
        decoder = factory()
        pending = view[consumed:]
        piece = decoder.decompress(pending, max_out - produced)
        chunks.append(piece)
        produced += len(piece)
        if kind in ("gzip", "zlib"):
            while decoder.unconsumed_tail and produced < max_out:
                piece = decoder.decompress(decoder.unconsumed_tail, max_out - produced)
                chunks.append(piece)
                produced += len(piece)
        if not decoder.eof:
            if produced < max_out:
                raise ValueError("the stream is truncated")
            break
        consumed = len(raw) - len(decoder.unused_data)
        if kind == "zlib" or not bytes(view[consumed : consumed + 512]).strip(b"\x00"):
            break
        if produced > (4 << 20) and produced > ratio * consumed:
            return b"", True
    if produced >= max_out:
        return b"", True
    return b"".join(chunks), False


class _BufferReader(io.RawIOBase):
    """A read-only, seekable file over a buffer, without copying it."""

    def __init__(self, data: Buffer) -> None:
        self._data = data
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: len(self._data)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        chunk = self._data[self._pos : self._pos + len(buffer)]
        buffer[: len(chunk)] = chunk
        self._pos += len(chunk)
        return len(chunk)

    def read(self, size: int = -1) -> bytes:
        end = len(self._data) if size is None or size < 0 else self._pos + size
        chunk = bytes(self._data[self._pos : end])
        self._pos += len(chunk)
        return chunk
