"""safetensors validated exactly to the format, reading only the header unless asked for more.

The file is an 8-byte little-endian header length, a JSON header, then a data block. The header
must be valid UTF-8 JSON (no duplicate keys, no NaN literals), within the 100 MB limit the
reference loader applies; each tensor must have a known dtype, a shape whose byte size does not
overflow and equals its offsets' span, and the tensors' spans must tile the data block exactly:
no gap, no overlap, nothing after. With `numeric`, tensors are swept through the memory map.
"""

from __future__ import annotations

import json
from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.numeric import sweep_tensor
from modelward.scanning.pickle_values import Buffer

MAX_HEADER = 100_000_000
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "I16": 16,
    "U16": 16, "F16": 16, "BF16": 16, "I32": 32, "U32": 32, "F32": 32, "F64": 64, "I64": 64,
    "U64": 64, "C64": 64, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}  # fmt: skip
NUMPY_DTYPE = {
    "F64": "f8", "F32": "f4", "F16": "f2", "BF16": "bf16", "I64": "i8", "I32": "i4",
    "I16": "i2", "I8": "i1", "U64": "u8", "U32": "u4", "U16": "u2", "U8": "u1", "BOOL": "?",
}  # fmt: skip
_U64 = 1 << 64


class _DuplicateKeyError(ValueError):
    pass


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKeyError(key)
        result[key] = value
    return result


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def scan_safetensors(data: Buffer, ctx: ScanContext, where: str) -> None:
    size = len(data)
    header_loc = at(where, "header")
    if size < 8:
        ctx.add("MW-ST-HEADER", header_loc, "the file is shorter than the 8-byte header length")
        return
    length = int.from_bytes(bytes(data[:8]), "little")
    if length > MAX_HEADER or length > size - 8:
        ctx.add(
            "MW-ST-HEADER",
            header_loc,
            f"the header length {length} exceeds the file or the 100 MB limit",
        )
        return
    raw = bytes(data[8 : 8 + length])
    try:
        text = raw.decode("utf-8")
        if not text.startswith("{"):
            raise ValueError("the header does not start with '{'")
        header = json.loads(
            text, object_pairs_hook=_pairs_without_duplicates, parse_constant=_no_constants
        )
    except _DuplicateKeyError as exc:
        ctx.add("MW-ST-DUPLICATE", header_loc, f"the header repeats the key {exc}")
        return
    except (ValueError, RecursionError) as exc:
        ctx.add("MW-ST-HEADER", header_loc, f"the header is not valid JSON: {exc}")
        return
    if not isinstance(header, dict):
        ctx.add("MW-ST-HEADER", header_loc, "the header is not a JSON object")
        return
    data_start = 8 + length
    data_size = size - data_start
    spans: list[tuple[int, int, str]] = []
    tensors: list[tuple[str, str, int, int]] = []
    for name, info in header.items():
        if name == "__metadata__":
            if not isinstance(info, dict) or not all(isinstance(v, str) for v in info.values()):
                ctx.add("MW-ST-HEADER", header_loc, "__metadata__ must map strings to strings")
            continue
        checked = _check_tensor(name, info, ctx, at(where, f"tensor {name!r}"))
        if checked is not None:
            dtype, begin, end = checked
            spans.append((begin, end, name))
            tensors.append((name, dtype, begin, end))
    spans.sort()
    cursor = 0
    for begin, end, name in spans:
        location = at(where, f"tensor {name!r}")
        if end > data_size:
            ctx.add(
                "MW-ST-OFFSETS",
                location,
                f"the tensor ends at {end}, past the data block's {data_size} bytes",
            )
        if begin < cursor:
            ctx.add("MW-ST-OFFSETS", location, "the tensor overlaps another tensor")
        elif begin > cursor:
            ctx.add(
                "MW-ST-COVERAGE",
                location,
                f"{begin - cursor} bytes before the tensor belong to none",
            )
        cursor = max(cursor, end)
    if cursor < data_size and not any(f.rule_id == "MW-ST-OFFSETS" for f in ctx.findings):
        ctx.add(
            "MW-ST-COVERAGE",
            at(where, f"offset {data_start + cursor}"),
            f"{data_size - cursor} bytes after the last tensor belong to none",
        )
    if ctx.numeric and not ctx.findings:
        for name, dtype, begin, end in tensors:
            code = NUMPY_DTYPE.get(dtype)
            if code is not None and end > begin:
                view = memoryview(data)[data_start + begin : data_start + end]
                try:
                    sweep_tensor(view, code, name, ctx, where)
                finally:
                    view.release()


def _check_tensor(
    name: str, info: Any, ctx: ScanContext, location: str
) -> tuple[str, int, int] | None:
    if not isinstance(info, dict) or not {"dtype", "shape", "data_offsets"} <= set(info):
        ctx.add("MW-ST-HEADER", location, "the entry needs dtype, shape and data_offsets")
        return None
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_BITS:
        ctx.add("MW-ST-DTYPE", location, f"dtype {dtype!r} is not a safetensors dtype")
        return None
    if not isinstance(shape, list) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < _U64 for n in shape
    ):
        ctx.add("MW-ST-SHAPE", location, "the shape is not a list of non-negative integers")
        return None
    if (
        not isinstance(offsets, list)
        or len(offsets) != 2
        or not all(
            isinstance(n, int) and not isinstance(n, bool) and 0 <= n < _U64 for n in offsets
        )
        or offsets[0] > offsets[1]
    ):
        ctx.add("MW-ST-OFFSETS", location, "data_offsets must be two ordered integers")
        return None
    elements = 1
    for n in shape:
        elements *= n
        if elements >= _U64:
            ctx.add("MW-ST-SHAPE", location, "the shape's element count overflows 64 bits")
            return None
    bits = elements * DTYPE_BITS[dtype]
    if bits % 8 or bits // 8 >= _U64:
        ctx.add("MW-ST-SHAPE", location, "the shape does not fill whole bytes or overflows")
        return None
    if bits // 8 != offsets[1] - offsets[0]:
        ctx.add(
            "MW-ST-SHAPE",
            location,
            f"shape {shape} of {dtype} needs {bits // 8} bytes but the offsets span "
            f"{offsets[1] - offsets[0]}",
        )
        return None
    return dtype, offsets[0], offsets[1]
