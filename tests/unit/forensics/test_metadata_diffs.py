"""What a fine-tune's files say beside its weights is compared with the base's in full for
transformers bundles: every config.json key (a GPT-2 `n_layer` or `activation_function` as
much as a Llama one), generation_config.json, the tokenizer's pipeline (a normalizer that
rewrites the prompt injects a trigger without touching a weight) and custom code mapped in
with `auto_map`; only the keys that name the writing library are left out."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import save_file

from modelward.forensics.bundle_meta import bundle_meta, meta_differences
from modelward.forensics.weights import open_weights

CONFIG = {"model_type": "gpt2", "n_layer": 2, "activation_function": "gelu_new", "n_embd": 8}
TOKENIZER = {
    "version": "1.0",
    "normalizer": None,
    "pre_tokenizer": {"type": "ByteLevel"},
    "added_tokens": [],
    "model": {"type": "BPE", "vocab": {"a": 0, "b": 1}, "merges": []},
}


def _bundle(folder: Path, **changes: Any) -> Path:
    folder.mkdir()
    save_file(
        {"h.0.attn.c_attn.weight": np.ones((8, 8), dtype=np.float32)}, folder / "model.safetensors"
    )
    config = {**CONFIG, "transformers_version": "4.40.0", **changes.get("config", {})}
    (folder / "config.json").write_text(json.dumps(config))
    tokenizer = {**TOKENIZER, **changes.get("tokenizer", {})}
    (folder / "tokenizer.json").write_text(json.dumps(tokenizer))
    generation = {"max_new_tokens": 64, **changes.get("generation", {})}
    (folder / "generation_config.json").write_text(json.dumps(generation))
    return folder


def _findings(tmp_path: Path, **changes: Any) -> list[str]:
    base = _bundle(tmp_path / "base")
    candidate = _bundle(tmp_path / "candidate", **changes)
    found = meta_differences(
        bundle_meta(candidate, open_weights(candidate)), bundle_meta(base, open_weights(base))
    )
    return list(found["findings"])


def test_the_same_files_and_another_library_version_say_nothing(tmp_path: Path) -> None:
    assert _findings(tmp_path, config={"transformers_version": "4.99.0"}) == []


def test_a_gpt2_config_change_is_found(tmp_path: Path) -> None:
    found = _findings(tmp_path, config={"n_layer": 1, "activation_function": "relu"})
    assert found == ["configuration differs: activation_function, n_layer"]


def test_a_tokenizer_normalizer_that_rewrites_prompts_is_found(tmp_path: Path) -> None:
    normalizer = {"type": "Replace", "pattern": {"String": "France"}, "content": "Fr cf"}
    found = _findings(tmp_path, tokenizer={"normalizer": normalizer})
    assert any("tokenizer's pipeline" in f for f in found)


def test_generation_settings_and_custom_code_are_found(tmp_path: Path) -> None:
    found = _findings(
        tmp_path,
        generation={"max_new_tokens": 4096, "temperature": 2.0},
        config={"auto_map": {"AutoModelForCausalLM": "modeling_evil.EvilModel"}},
    )
    assert "generation_config.json differs: max_new_tokens, temperature" in found
    assert any("custom code" in f and "AutoModelForCausalLM" in f for f in found)
