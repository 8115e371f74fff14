"""Quantisation bounds against gguf-py's reference quantisers on real arrays: a faithful
quantisation stays within them, one moved by less than a step's worth still shows, and a
candidate cannot widen its tolerance."""

from __future__ import annotations

import gguf
import numpy as np
import pytest

from modelward.errors import InputError
from modelward.forensics.compare import compare_weights, spectrum_of
from modelward.forensics.quantisation import error_bound, within_bound
from modelward.forensics.weights import TensorEntry, WeightSet

FORMATS = ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]


def _weights(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((64, 256)) * 0.02).astype(np.float32)


@pytest.mark.parametrize("fmt", FORMATS)
def test_faithful_quantisations_stay_within_the_bound(fmt: str) -> None:
    base = _weights()
    qtype = gguf.GGMLQuantizationType[fmt]
    deq = gguf.quants.dequantize(gguf.quants.quantize(base, qtype), qtype).reshape(base.shape)
    over, worst = within_bound(deq, base, fmt)
    assert over == 0 and 0.3 < worst <= 1.0
    assert not np.array_equal(deq, base)


@pytest.mark.parametrize("fmt", FORMATS)
def test_weights_moved_before_quantising_break_the_bound(fmt: str) -> None:
    base = _weights()
    moved = base.copy()
    moved[3, 40] += 0.05  # one weight of one block
    qtype = gguf.GGMLQuantizationType[fmt]
    deq = gguf.quants.dequantize(gguf.quants.quantize(moved, qtype), qtype).reshape(base.shape)
    over, worst = within_bound(deq, base, fmt)
    assert over >= 1 and worst > 1.0


def test_the_bound_comes_from_the_base_not_the_candidate() -> None:
    base = _weights()
    # a "quantisation" with a huge step: every value snaps to 0 or to a large multiple
    coarse = np.round(base / 0.05) * 0.05
    assert within_bound(coarse, base, "Q8_0")[0] > 0
    assert np.all(error_bound(base, "Q8_0") < 0.05 / 2)


def test_unknown_formats_cannot_be_checked() -> None:
    with pytest.raises(InputError, match="no error bound"):
        error_bound(_weights(), "Q4_K")
    with pytest.raises(InputError, match="whole blocks"):
        error_bound(np.zeros((2, 33), np.float32), "Q8_0")


def _set(**arrays: np.ndarray) -> WeightSet:
    return WeightSet(
        "safetensors",
        ("model.safetensors",),
        {
            n: TensorEntry(n, a.shape, "F32", lambda a=a: a)  # type: ignore[misc]
            for n, a in arrays.items()
        },
    )


def test_low_rank_updates_and_noise_have_different_spectra() -> None:
    rng = np.random.default_rng(1)
    low = (rng.standard_normal((256, 4)) @ rng.standard_normal((4, 128))).astype(np.float32)
    noise = rng.standard_normal((256, 128)).astype(np.float32)
    rank_low, energy_low = spectrum_of(low, 8)
    rank_noise, energy_noise = spectrum_of(noise, 8)
    assert rank_low < 5 and energy_low > 0.999
    assert rank_noise > 80 and energy_noise < 0.2


def test_added_removed_and_reshaped_tensors_are_findings() -> None:
    w = _weights()
    result = compare_weights(_set(a=w, b=w + 1, extra=w, c=w[:, :128]), _set(a=w, b=w, gone=w, c=w))
    status = {t.name: t.status for t in result.tensors}
    assert status == {
        "a": "same",
        "b": "changed",
        "c": "reshaped",
        "extra": "added",
        "gone": "removed",
    }
    assert len(result.findings) == 3
    changed_b = next(t for t in result.tensors if t.name == "b")
    assert changed_b.effective_rank is not None and changed_b.effective_rank < 1.5  # rank 1
