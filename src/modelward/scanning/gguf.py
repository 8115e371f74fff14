"""GGUF files: every count and length bounded by the file size, tensors inside the data block,
and the chat template judged by its Jinja2 syntax tree.

The reader follows the GGUF v1-v3 layout (header, key/value metadata, tensor infos, aligned
tensor data). No count is trusted before it is checked against the bytes left, so a header that
claims a billion entries fails at once. Tensor data is only read by the numeric sweep.
"""

from __future__ import annotations

import struct
from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.numeric import sweep_tensor
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.templates import TemplateSyntaxProblem, template_problems

_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?",
            10: "<Q", 11: "<q", 12: "<d"}  # fmt: skip
# ggml type -> (block size in elements, bytes per block)
GGML_TYPES = {
    0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
    9: (32, 36), 10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176),
    14: (256, 210), 15: (256, 292), 16: (256, 66), 17: (256, 74), 18: (256, 98),
    19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82), 23: (256, 136), 24: (1, 1),
    25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2), 34: (256, 54),
    35: (256, 66), 39: (32, 17),
}  # fmt: skip
_SWEEP_DTYPES = {0: "f4", 1: "f2", 28: "f8", 30: "bf16"}
MAX_STRING = 64 << 20
MAX_DIMS = 4


class GGUFError(Exception):
    pass


class _Reader:
    def __init__(self, data: Buffer, version: int) -> None:
        self.data = data
        self.pos = 0
        self.version = version

    def need(self, n: int) -> None:
        if n < 0 or self.pos + n > len(self.data):
            raise GGUFError(f"offset {self.pos}: {n} bytes needed but the file ends")

    def unpack(self, fmt: str) -> Any:
        size = struct.calcsize(fmt)
        self.need(size)
        value = struct.unpack(fmt, bytes(self.data[self.pos : self.pos + size]))[0]
        self.pos += size
        return value

    def count(self) -> int:
        value: int = self.unpack("<I" if self.version == 1 else "<Q")
        return value

    def string(self) -> str:
        length = self.count()
        if length > MAX_STRING:
            raise GGUFError(f"offset {self.pos}: a string claims {length} bytes")
        self.need(length)
        raw = bytes(self.data[self.pos : self.pos + length])
        self.pos += length
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"offset {self.pos - length}: a string is not UTF-8") from exc

    def value(self, kind: int, depth: int = 0) -> Any:
        if kind in _SCALARS:
            return self.unpack(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9 and depth < 2:
            item_kind = self.unpack("<I")
            length = self.count()
            smallest = struct.calcsize(_SCALARS[item_kind]) if item_kind in _SCALARS else 8
            if length * smallest > len(self.data) - self.pos:
                raise GGUFError(f"offset {self.pos}: an array claims {length} items")
            items = [self.value(item_kind, depth + 1) for _ in range(length)]
            return items if item_kind == 8 else len(items)
        raise GGUFError(f"offset {self.pos}: value type {kind} is unknown")


def scan_gguf(data: Buffer, ctx: ScanContext, where: str) -> None:
    try:
        _scan(data, ctx, where)
    except (GGUFError, struct.error) as exc:
        ctx.add("MW-GGUF-STRUCTURE", where, f"the GGUF file is not well formed: {exc}")


def _scan(data: Buffer, ctx: ScanContext, where: str) -> None:
    if len(data) < 8:
        raise GGUFError("the header is truncated")
    version = struct.unpack("<I", bytes(data[4:8]))[0]
    if version not in (1, 2, 3):
        raise GGUFError(f"version {version} is unknown")
    reader = _Reader(data, version)
    reader.pos = 8
    tensor_count = reader.count()
    kv_count = reader.count()
    if tensor_count > len(data) // 24 or kv_count > len(data) // 12:
        raise GGUFError(f"counts ({tensor_count} tensors, {kv_count} keys) exceed the file")
    alignment = 32
    for _ in range(kv_count):
        key = reader.string()
        kind = reader.unpack("<I")
        value = reader.value(kind)
        if key == "general.alignment":
            if not isinstance(value, int) or value <= 0 or value & (value - 1):
                raise GGUFError("general.alignment is not a power of two")
            alignment = value
        elif isinstance(value, str) and (
            key == "tokenizer.chat_template" or key.startswith("tokenizer.chat_template.")
        ):
            check_template(value, ctx, at(where, f"key {key!r}"), "MW-GGUF-TEMPLATE")
    tensors: list[tuple[str, int, int, int]] = []
    for _ in range(tensor_count):
        name = reader.string()
        n_dims = reader.unpack("<I")
        if n_dims > MAX_DIMS:
            raise GGUFError(f"tensor {name!r} has {n_dims} dimensions")
        dims = [reader.count() for _ in range(n_dims)]
        kind = reader.unpack("<I")
        offset = reader.unpack("<Q")
        if kind not in GGML_TYPES:
            raise GGUFError(f"tensor {name!r} has unknown type {kind}")
        block, block_bytes = GGML_TYPES[kind]
        elements = 1
        for d in dims:
            elements *= d
        if dims and dims[0] % block:
            raise GGUFError(f"tensor {name!r}: first dimension is not a multiple of {block}")
        if offset % alignment:
            raise GGUFError(f"tensor {name!r} is not aligned to {alignment}")
        tensors.append((name, kind, offset, elements // block * block_bytes))
    data_start = -(-reader.pos // alignment) * alignment
    data_size = len(data) - data_start
    cursor = 0
    for name, kind, offset, nbytes in sorted(tensors, key=lambda t: t[2]):
        if offset + nbytes > data_size:
            raise GGUFError(f"tensor {name!r} runs past the end of the file")
        if offset < cursor:
            raise GGUFError(f"tensor {name!r} overlaps another tensor")
        cursor = offset + nbytes
        code = _SWEEP_DTYPES.get(kind)
        if ctx.numeric and code is not None and nbytes:
            view = memoryview(data)[data_start + offset : data_start + offset + nbytes]
            try:
                sweep_tensor(view, code, name, ctx, where)
            finally:
                view.release()


def check_template(source: str, ctx: ScanContext, location: str, rule_id: str) -> None:
    try:
        problems = template_problems(source)
    except TemplateSyntaxProblem as exc:
        ctx.add(
            "MW-GGUF-TEMPLATE-SYNTAX" if rule_id == "MW-GGUF-TEMPLATE" else "MW-JSON-INVALID",
            location,
            f"the chat template does not parse: {exc}",
        )
        return
    for problem in problems:
        ctx.add(rule_id, location, f"the chat template {problem}")
