"""The numeric sweep: NaN, Inf, all-zero and constant tensors, read in bounded chunks.

Tensors are viewed in place (NumPy over the file's memory map, never copied whole) and reduced
chunk by chunk with min and max, which NaN and Inf propagate through, so one pass finds all four
conditions. bfloat16 has no NumPy dtype and is checked on its bit patterns. It only reads.
"""

from __future__ import annotations

from typing import Any

from modelward.scanning.context import ScanContext, at

CHUNK_ELEMENTS = 1 << 22


def sweep_tensor(view: Any, dtype: str, name: str, ctx: ScanContext, where: str) -> None:
    """Check one tensor's raw little-endian bytes; `dtype` is a NumPy code or 'bf16'."""
    import numpy as np

    location = at(where, f"tensor {name!r}") if where != name else f"tensor {name!r}"
    if dtype == "bf16":
        bits = np.frombuffer(view, dtype="<u2")
        _sweep_bf16(bits, name, ctx, location)
        return
    try:
        np_dtype = (
            np.dtype(dtype).newbyteorder("<") if dtype not in ("?", "bool") else np.dtype("?")
        )
    except TypeError:
        return
    if len(view) % np_dtype.itemsize:
        return
    array = np.frombuffer(view, dtype=np_dtype)
    if array.size == 0:
        return
    is_float = np_dtype.kind == "f"
    low: Any = None
    high: Any = None
    for start in range(0, array.size, CHUNK_ELEMENTS):
        chunk = array[start : start + CHUNK_ELEMENTS]
        chunk_low, chunk_high = chunk.min(), chunk.max()
        if is_float and (np.isnan(chunk_low) or np.isnan(chunk_high)):
            ctx.add("MW-NUM-NAN", location, f"tensor {name!r} contains NaN values")
            return
        low = chunk_low if low is None else min(low, chunk_low)
        high = chunk_high if high is None else max(high, chunk_high)
    if is_float and (np.isinf(low) or np.isinf(high)):
        ctx.add("MW-NUM-INF", location, f"tensor {name!r} contains infinite values")
        return
    _report_flat(low == high, bool(low == 0 and high == 0), array.size, name, ctx, location)


def _sweep_bf16(bits: Any, name: str, ctx: ScanContext, location: str) -> None:
    if bits.size == 0:
        return
    has_nan = has_inf = False
    first = int(bits[0])
    constant = True
    nonzero = False
    for start in range(0, bits.size, CHUNK_ELEMENTS):
        chunk = bits[start : start + CHUNK_ELEMENTS]
        special = (chunk & 0x7F80) == 0x7F80
        if special.any():
            mantissa = chunk[special] & 0x007F
            has_nan = has_nan or bool((mantissa != 0).any())
            has_inf = has_inf or bool((mantissa == 0).any())
        constant = constant and bool((chunk == first).all())
        nonzero = nonzero or bool((chunk & 0x7FFF).any())
    if has_nan:
        ctx.add("MW-NUM-NAN", location, f"tensor {name!r} contains NaN values")
    elif has_inf:
        ctx.add("MW-NUM-INF", location, f"tensor {name!r} contains infinite values")
    else:
        _report_flat(constant, not nonzero, bits.size, name, ctx, location)


def _report_flat(
    constant: bool, all_zero: bool, size: int, name: str, ctx: ScanContext, location: str
) -> None:
    if size < 2:
        return
    if all_zero:
        ctx.add("MW-NUM-ZERO", location, f"tensor {name!r} is all zeros")
    elif constant:
        ctx.add("MW-NUM-CONSTANT", location, f"all {size} values of tensor {name!r} are equal")
