"""Weights forensics does not read may still be what a loader uses: any weight-like file in the
candidate that is not compared (by extension, or by its sniffed format) fails the comparison by
name. Files written by torch and numpy themselves."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.numpy import save_file

from modelward.forensics.compare import compare_weights
from modelward.forensics.weights import open_weights


def _bundle(folder: Path, weights: dict[str, np.ndarray]) -> Path:
    folder.mkdir()
    save_file(weights, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    (folder / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0}}}))
    return folder


def test_a_decoy_safetensors_beside_real_weights_fails(tmp_path: Path) -> None:
    weights = {"w": np.ones((4, 4), np.float32)}
    base = _bundle(tmp_path / "base", weights)
    cand = _bundle(tmp_path / "cand", weights)  # the decoy: identical to the base
    torch.save({"w": torch.full((4, 4), 200.0)}, cand / "pytorch_model.bin")
    torch.save({"w": torch.zeros(2)}, cand / "weights.dat")  # sniffed: a torch zip
    np.save(cand / "extra", np.zeros(3, np.float32))  # extra.npy
    result = compare_weights(open_weights(cand), open_weights(base))
    assert result.changed == []
    assert set(result.findings) == {
        "weights in pytorch_model.bin are not compared",
        "weights in weights.dat are not compared",
        "weights in extra.npy are not compared",
    }


def test_a_bundle_of_compared_weights_and_text_has_no_such_finding(tmp_path: Path) -> None:
    weights = {"w": np.ones((4, 4), np.float32)}
    base = _bundle(tmp_path / "base", weights)
    cand = _bundle(tmp_path / "cand", weights)
    (cand / "README.md").write_text("# a model\n")
    (cand / "merges.txt").write_text("a b\n")
    result = compare_weights(open_weights(cand), open_weights(base))
    assert result.findings == () and open_weights(cand).uncompared == ()
