"""A NaN or inf in the candidate where the base is finite is a change, with a named finding, in
safetensors and GGUF files written by their own libraries, with or without a quantisation claim."""

from __future__ import annotations

from pathlib import Path

import gguf
import numpy as np
import pytest
from safetensors.numpy import save_file

from modelward.forensics.compare import compare_weights
from modelward.forensics.weights import open_weights


def _base() -> np.ndarray:
    return (np.random.default_rng(0).standard_normal((4, 64)) * 0.02).astype(np.float32)


def _gguf(path: Path, weight: np.ndarray, qtype: gguf.GGMLQuantizationType) -> Path:
    writer = gguf.GGUFWriter(str(path), "llama")
    with np.errstate(invalid="ignore"):  # gguf's quantiser meets the NaN
        data = (
            weight
            if qtype == gguf.GGMLQuantizationType.F32
            else gguf.quants.quantize(weight, qtype)
        )
    writer.add_tensor("blk.0.ffn_up.weight", data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_safetensors_weights_are_a_change(tmp_path: Path, bad: float) -> None:
    base = _base()
    cand = base.copy()
    cand[1, :] = bad
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    save_file({"w": base, "n": np.ones(3, np.float32)}, str(tmp_path / "b" / "model.safetensors"))
    save_file({"w": cand, "n": np.ones(3, np.float32)}, str(tmp_path / "c" / "model.safetensors"))
    result = compare_weights(open_weights(tmp_path / "c"), open_weights(tmp_path / "b"))
    changed = {t.name: t for t in result.tensors}
    assert changed["w"].changed and changed["w"].status == "changed"
    assert not changed["n"].changed
    assert any("tensor w has 64 non-finite value(s)" in f for f in result.findings)
    assert result.summary()["changed"] == 1


def test_a_nan_the_base_already_has_is_not_a_change(tmp_path: Path) -> None:
    base = _base()
    base[0, 0] = np.nan
    (tmp_path / "b").mkdir()
    (tmp_path / "c").mkdir()
    save_file({"w": base}, str(tmp_path / "b" / "model.safetensors"))
    save_file({"w": base.copy()}, str(tmp_path / "c" / "model.safetensors"))
    result = compare_weights(open_weights(tmp_path / "c"), open_weights(tmp_path / "b"))
    assert not result.tensors[0].changed and result.findings == ()


@pytest.mark.parametrize(
    ("qtype", "claim"),
    [(gguf.GGMLQuantizationType.F32, None), (gguf.GGMLQuantizationType.Q8_0, "Q8_0")],
)
def test_non_finite_gguf_weights_are_a_change(
    tmp_path: Path, qtype: gguf.GGMLQuantizationType, claim: str | None
) -> None:
    base = _base()
    cand = base.copy()
    cand[2, 5] = np.nan
    base_file = _gguf(tmp_path / "base.gguf", base, gguf.GGMLQuantizationType.F32)
    cand_file = _gguf(tmp_path / "cand.gguf", cand, qtype)
    assert np.isnan(open_weights(cand_file).tensors["blk.0.ffn_up.weight"].load()).any()
    result = compare_weights(open_weights(cand_file), open_weights(base_file), claim=claim)
    (delta,) = result.tensors
    assert delta.changed and delta.status == "changed"
    if claim is not None:
        assert delta.over_bound is not None and delta.over_bound >= 1
    assert any("non-finite" in f for f in result.findings)
