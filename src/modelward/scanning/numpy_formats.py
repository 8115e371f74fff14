"""NumPy `.npy` arrays (also the members of `.npz`): header, size, and embedded pickles.

The header is a Python literal that NumPy reads with a literal evaluator; it is parsed here with
`ast.literal_eval` under the same length bound NumPy applies. An array whose dtype holds Python
objects is stored as a pickle after the header; it is analysed like any pickle, because
`numpy.load(..., allow_pickle=True)` unpickles it.
"""

from __future__ import annotations

import ast
import struct
from typing import Any

from modelward.scanning.context import ScanContext, at
from modelward.scanning.numeric import sweep_tensor
from modelward.scanning.pickle_values import Buffer
from modelward.scanning.pickles import scan_pickle_stream

MAX_HEADER = 10_000


def scan_npy(data: Buffer, ctx: ScanContext, where: str) -> None:
    parsed = _parse_header(data, ctx, where)
    if parsed is None:
        return
    dtype, shape, offset = parsed
    if dtype.hasobject:
        scan_pickle_stream(data, ctx, where, start=offset)
        return
    count = 1
    for n in shape:
        count *= n
    expected = count * dtype.itemsize
    actual = len(data) - offset
    if actual != expected:
        ctx.add(
            "MW-NPY-SIZE",
            at(where, f"offset {offset}"),
            f"the header describes {expected} bytes of data but {actual} follow",
        )
        return
    if ctx.numeric and dtype.kind in "fiub" and dtype.isnative and expected:
        sweep_tensor(data[offset:], dtype.str, where or "array", ctx, where)


def _parse_header(
    data: Buffer, ctx: ScanContext, where: str
) -> tuple[Any, tuple[int, ...], int] | None:
    import numpy as np

    def bad(message: str) -> None:
        ctx.add("MW-NPY-HEADER", at(where, "header"), message)

    if len(data) < 10 or bytes(data[:6]) != b"\x93NUMPY":
        bad("the NumPy magic string is missing or the file is truncated")
        return None
    major = data[6]
    if major == 1:
        (length,) = struct.unpack("<H", bytes(data[8:10]))
        start = 10
    elif major in (2, 3):
        if len(data) < 12:
            bad("the header length is truncated")
            return None
        (length,) = struct.unpack("<I", bytes(data[8:12]))
        start = 12
    else:
        bad(f"format version {major} is unknown")
        return None
    if length > MAX_HEADER or start + length > len(data):
        bad(f"the header length {length} is too large or past the end of the file")
        return None
    raw = bytes(data[start : start + length])
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
        header = ast.literal_eval(text)
    except (ValueError, SyntaxError, UnicodeDecodeError, MemoryError, RecursionError, TypeError):
        bad("the header is not a Python literal")
        return None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        bad("the header must have exactly the keys descr, fortran_order and shape")
        return None
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(
        isinstance(n, int) and not isinstance(n, bool) and 0 <= n < 2**63 for n in shape
    ):
        bad("the shape is not a tuple of non-negative integers")
        return None
    if not isinstance(header["fortran_order"], bool):
        bad("fortran_order is not a boolean")
        return None
    try:
        dtype = np.lib.format.descr_to_dtype(header["descr"])
    except (TypeError, ValueError, KeyError, IndexError, RecursionError):
        bad("the dtype description is not valid")
        return None
    return dtype, shape, start + length
