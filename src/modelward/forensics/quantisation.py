"""How far a faithful quantisation may move each weight, per GGUF format, from the base alone.

For a block-quantised format the error bound of every element is computed from the *base*
block (its absolute maximum, or its range), never from the scales stored in the candidate, so a
candidate cannot widen its own tolerance by writing a large scale. The bounds are those of the
reference quantisers (ggml's and gguf-py's), with slack for the float16 rounding of the scale:

- Q8_0: d = amax/127, |error| <= d/2 (+ 16-bit rounding of d times |q| <= 127)
- Q4_0: d = max/-8 (signed), |error| <= |d| (the clamp at +7 costs a whole step)
- Q4_1: d = (max-min)/15, |error| <= d/2 (+ the rounding of min and d)
- Q5_0 / Q5_1: as Q4_0 / Q4_1 with 16 / 31 steps
- F16 / BF16: the relative rounding of the format; F32: exact

Formats without a bound here (the k-quants, IQ formats) cannot be checked: the caller reports
the claim as unverifiable, which fails closed.
"""

from __future__ import annotations

import numpy as np

from modelward.errors import InputError

_FP16_REL = 2.0**-11

# name -> (block size, kind)
_BLOCK_FORMATS: dict[str, tuple[int, str]] = {
    "Q8_0": (32, "q8_0"),
    "Q4_0": (32, "q4_0"),
    "Q4_1": (32, "q4_1"),
    "Q5_0": (32, "q5_0"),
    "Q5_1": (32, "q5_1"),
}
CHECKABLE_FORMATS = ("F32", "F16", "BF16", *_BLOCK_FORMATS)


def _block_bounds(base: np.ndarray, fmt: str) -> tuple[np.ndarray, int]:
    """(per-block bound, block size) for a block format; base reshaped into rows of blocks."""
    size, kind = _BLOCK_FORMATS[fmt]
    if base.size == 0 or base.shape[-1] % size:
        raise InputError(f"a {fmt} tensor's rows must be whole blocks of {size}")
    blocks = base.reshape(-1, size)
    amax = np.abs(blocks).max(axis=1)
    if kind == "q8_0":
        per_block = amax / 127.0 * (0.5 + 127 * _FP16_REL * 2)
    elif kind in ("q4_0", "q5_0"):
        steps = 8.0 if kind == "q4_0" else 16.0
        per_block = amax / steps * (1.0 + 2 * steps * _FP16_REL * 2)
    else:
        steps = 15.0 if kind == "q4_1" else 31.0
        lo, hi = blocks.min(axis=1), blocks.max(axis=1)
        per_block = (hi - lo) / steps * (0.5 + steps * _FP16_REL * 2) + np.abs(lo) * _FP16_REL * 2
    return (per_block * 1.001 + 1e-7 * amax).astype(np.float32), size


def error_bound(base: np.ndarray, fmt: str) -> np.ndarray:
    """The largest |dequantised - base| a faithful `fmt` quantisation of `base` can have, per
    element (same shape as `base`). InputError for a format with no known bound."""
    base = np.asarray(base, dtype=np.float32)
    if fmt == "F32":
        return np.zeros_like(base)
    if fmt == "F16":
        return np.asarray(np.abs(base) * np.float32(_FP16_REL) + np.float32(6.0e-8))
    if fmt == "BF16":
        return np.asarray(np.abs(base) * np.float32(2.0**-8) + np.float32(1e-38))
    if fmt not in _BLOCK_FORMATS:
        raise InputError(f"no error bound is known for {fmt}; the claim cannot be checked")
    per_block, size = _block_bounds(base, fmt)
    return np.repeat(per_block[:, None], size, axis=1).reshape(base.shape)


def within_bound(candidate: np.ndarray, base: np.ndarray, fmt: str) -> tuple[int, float]:
    """(elements over the bound, largest |error| / bound ratio) of `candidate` against a
    faithful `fmt` quantisation of `base`."""
    base = np.asarray(base, dtype=np.float32)
    error = np.abs(np.asarray(candidate, dtype=np.float32) - base)
    if fmt in _BLOCK_FORMATS:
        per_block, size = _block_bounds(base, fmt)
        rows = error.reshape(-1, size)
        over = int(np.count_nonzero(rows > per_block[:, None]))
        worst_err = rows.max(axis=1)
        bound = per_block
    else:
        bound_full = error_bound(base, fmt)
        over = int(np.count_nonzero(error > bound_full))
        worst_err, bound = error.reshape(-1), bound_full.reshape(-1)
    if worst_err.size == 0:
        return over, 0.0
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(bound > 0, worst_err / bound, np.where(worst_err > 0, np.inf, 0.0))
    return over, float(np.max(ratio))
