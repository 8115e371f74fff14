"""Comparing a candidate's weights with its base, tensor by tensor.

For every tensor of either side: whether it changed, its relative change ||C - B|| / ||B||
(Frobenius), and, for a changed 2-D weight, the spectrum of the delta C - B: its effective rank
(exp of the entropy of the normalised singular values, Roy & Vetterli 2007) and the share of its
energy (sum of squared singular values) in the top k. A fine-tune's update, and above all a
low-rank (LoRA-style) one, packs its energy into a few directions; noise spreads it over all of
them. With a quantisation claim ("a Q8_0 build of the base"), a tensor counts as changed only
when some element moved more than a faithful quantisation of the base to the candidate's own
format can move it (see `quantisation`); a tensor whose format has no known bound makes the
claim unverifiable. Pure computation on `WeightSet`s; no I/O beyond the tensor loaders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from modelward.errors import InputError
from modelward.forensics.quantisation import CHECKABLE_FORMATS, within_bound
from modelward.forensics.weights import WeightSet, gguf_view_of

TOP_K = 8
QUANT_CLAIMS = ("Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16")


@dataclass(frozen=True)
class TensorDelta:
    name: str
    changed: bool
    relative_change: float | None
    shape: tuple[int, ...] | None
    base_shape: tuple[int, ...] | None
    dtype: str | None
    base_dtype: str | None
    status: str  # "same", "changed", "added", "removed", "reshaped"
    effective_rank: float | None = None
    top_k_energy: float | None = None
    max_abs_change: float | None = None
    over_bound: int | None = None  # quantisation claim: elements past the faithful bound
    worst_bound_ratio: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "changed": self.changed,
            "status": self.status,
            "relative_change": _finite(self.relative_change),
            "max_abs_change": _finite(self.max_abs_change),
            "shape": list(self.shape) if self.shape is not None else None,
            "base_shape": list(self.base_shape) if self.base_shape is not None else None,
            "dtype": self.dtype,
            "base_dtype": self.base_dtype,
            "effective_rank": _finite(self.effective_rank),
            "top_k_energy": _finite(self.top_k_energy),
            "over_bound": self.over_bound,
            "worst_bound_ratio": _finite(self.worst_bound_ratio),
        }


@dataclass(frozen=True)
class WeightComparison:
    candidate_format: str
    base_format: str
    tensors: tuple[TensorDelta, ...]
    claim: str | None
    top_k: int
    findings: tuple[str, ...] = field(default=())

    @property
    def changed(self) -> list[TensorDelta]:
        return [t for t in self.tensors if t.changed]

    def summary(self) -> dict[str, Any]:
        changed = [t for t in self.tensors if t.status == "changed"]
        ranks = [t.effective_rank for t in changed if t.effective_rank is not None]
        energies = [t.top_k_energy for t in changed if t.top_k_energy is not None]
        rel = [t.relative_change for t in changed if t.relative_change is not None]
        return {
            "tensors": len(self.tensors),
            "changed": len(changed),
            "added": sorted(t.name for t in self.tensors if t.status == "added"),
            "removed": sorted(t.name for t in self.tensors if t.status == "removed"),
            "reshaped": sorted(t.name for t in self.tensors if t.status == "reshaped"),
            "max_relative_change": _finite(max(rel)) if rel else None,
            "median_effective_rank": _finite(float(np.median(ranks))) if ranks else None,
            "median_top_k_energy": _finite(float(np.median(energies))) if energies else None,
            "top_k": self.top_k,
        }


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), 6)


def compare_weights(
    candidate: WeightSet, base: WeightSet, *, claim: str | None = None, top_k: int = TOP_K
) -> WeightComparison:
    if claim is not None and claim not in QUANT_CLAIMS:
        raise InputError(f"unknown quantisation claim {claim!r}; one of {', '.join(QUANT_CLAIMS)}")
    if top_k < 1:
        raise InputError("top-k must be at least 1")
    cand = gguf_view_of(candidate, base)
    ref = gguf_view_of(base, candidate)
    # a loader may take its weights from a file not compared here (a decoy safetensors next to
    # a pytorch_model.bin): the comparison then proves nothing
    findings = [f"weights in {name} are not compared" for name in candidate.uncompared]
    deltas: list[TensorDelta] = []
    for name in sorted(set(cand.tensors) | set(ref.tensors)):
        c, b = cand.tensors.get(name), ref.tensors.get(name)
        if c is None or b is None:
            present = c or b
            assert present is not None
            status = "added" if b is None else "removed"
            deltas.append(
                TensorDelta(
                    name,
                    True,
                    None,
                    c.shape if c else None,
                    b.shape if b else None,
                    c.dtype if c else None,
                    b.dtype if b else None,
                    status,
                )
            )
            continue
        if c.shape != b.shape:
            deltas.append(
                TensorDelta(name, True, None, c.shape, b.shape, c.dtype, b.dtype, "reshaped")
            )
            continue
        deltas.append(_delta(name, c.load(), b.load(), c.dtype, b.dtype, claim, top_k, findings))
    for d in deltas:
        if d.status in ("added", "removed", "reshaped"):
            findings.append(f"tensor {d.name} was {d.status}")
    if claim is not None:
        moved = [d.name for d in deltas if d.status == "changed"]
        if moved:
            findings.append(
                f"{len(moved)} tensor(s) moved beyond {claim} quantisation error of the base "
                f"(first: {', '.join(moved[:3])}): not a faithful quantisation"
            )
        quantised = {d.dtype for d in deltas if d.dtype not in (None, "F32")}
        if quantised and claim not in quantised:
            findings.append(
                f"claimed {claim}, but the candidate's tensors are {', '.join(sorted(quantised))}"
            )
    return WeightComparison(
        candidate.format, base.format, tuple(deltas), claim, top_k, tuple(findings)
    )


def _delta(
    name: str,
    cand: np.ndarray,
    base: np.ndarray,
    dtype: str,
    base_dtype: str,
    claim: str | None,
    top_k: int,
    findings: list[str],
) -> TensorDelta:
    # a NaN or inf compares unequal to everything, so it would pass as "no change": any
    # non-finite value that is not the base's own (same place, same value) is a change
    finite = np.isfinite(cand) & np.isfinite(base)
    same_nonfinite = ~finite & ((cand == base) | (np.isnan(cand) & np.isnan(base)))
    new_nonfinite = int(np.count_nonzero(~finite & ~same_nonfinite))
    if new_nonfinite:
        findings.append(
            f"tensor {name} has {new_nonfinite} non-finite value(s) (NaN or inf) the base "
            "does not have"
        )
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.where(finite, cand - base, np.float32(0.0))
    norm = float(np.linalg.norm(np.where(np.isfinite(base), base, np.float32(0.0))))
    diff_norm = math.inf if new_nonfinite else float(np.linalg.norm(diff))
    relative = diff_norm / norm if norm > 0 else (0.0 if diff_norm == 0 else math.inf)
    max_abs = math.inf if new_nonfinite else (float(np.max(np.abs(diff))) if diff.size else 0.0)
    over = worst = None
    if claim is not None:
        fmt = dtype if dtype in CHECKABLE_FORMATS else None
        if fmt is None:
            findings.append(f"tensor {name} is {dtype}: no error bound is known, unverifiable")
            changed = True
        else:
            over, worst = within_bound(np.where(finite, cand, base), base, fmt)
            over += new_nonfinite
            if new_nonfinite:
                worst = math.inf
            changed = over > 0
    else:
        changed = diff_norm > 0
    rank = energy = None
    if changed and not new_nonfinite and cand.ndim == 2 and min(cand.shape) > 1:
        rank, energy = spectrum_of(diff, top_k)
    return TensorDelta(
        name,
        changed,
        relative,
        cand.shape,
        base.shape,
        dtype,
        base_dtype,
        "changed" if changed else "same",
        rank,
        energy,
        max_abs,
        over,
        worst,
    )


def spectrum_of(delta: np.ndarray, top_k: int) -> tuple[float, float]:
    """(effective rank, top-k energy share) of a 2-D delta, from the eigenvalues of its Gram
    matrix on the smaller side (the squared singular values)."""
    d = np.asarray(delta, dtype=np.float32)
    gram = d.T @ d if d.shape[0] >= d.shape[1] else d @ d.T
    energies = np.clip(np.linalg.eigvalsh(gram.astype(np.float64))[::-1], 0.0, None)
    total = float(energies.sum())
    if total <= 0:
        return 0.0, 0.0
    sigma = np.sqrt(energies)
    p = sigma / sigma.sum()
    p = p[p > 0]
    rank = float(np.exp(-(p * np.log(p)).sum()))
    return rank, float(energies[:top_k].sum() / total)
