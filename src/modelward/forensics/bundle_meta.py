"""What a bundle says about itself besides its weights, in one shape for safetensors bundles
(config.json, tokenizer.json, tokenizer_config.json, chat_template.jinja,
generation_config.json) and GGUF files (their metadata keys), and the differences between two.

Compared: the vocabulary (token strings by id), the special token ids (bos, eos, pad, unk),
the chat template, the tokenizer's merges and the model configuration (architecture numbers,
under transformers' names). Reads small JSON/text files only; a malformed one is an InputError.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.errors import InputError
from modelward.forensics.weights import WeightSet

_MAX_JSON = 64 * 1024 * 1024
SPECIAL = ("bos", "eos", "pad", "unk")
# GGUF `{arch}.` keys under their transformers names
_GGUF_CONFIG = {
    "block_count": "num_hidden_layers",
    "embedding_length": "hidden_size",
    "feed_forward_length": "intermediate_size",
    "attention.head_count": "num_attention_heads",
    "attention.head_count_kv": "num_key_value_heads",
    "context_length": "max_position_embeddings",
    "rope.freq_base": "rope_theta",
    "attention.layer_norm_rms_epsilon": "rms_norm_eps",
    "vocab_size": "vocab_size",
}
_GGUF_SPECIAL = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
}


@dataclass(frozen=True)
class BundleMeta:
    vocab: list[str] | None
    special: dict[str, int | None]
    chat_template: str | None
    merges_digest: str | None
    config: dict[str, Any]
    # the whole of config.json and generation_config.json (bar keys that only say which
    # library wrote them), the digest of the tokenizer's processing pipeline (normalizer,
    # pre-tokenizer, post-processor, decoder, added tokens), and any custom code the bundle
    # maps in (`auto_map`): compared when both sides have them (transformers bundles)
    full_config: dict[str, Any] | None = None
    generation: dict[str, Any] | None = None
    pipeline: str | None = None
    custom_code: tuple[str, ...] = ()


def bundle_meta(bundle: Path, weights: WeightSet) -> BundleMeta:
    if weights.format == "gguf":
        f = weights.gguf_fields
        arch = weights.architecture or ""
        config: dict[str, Any] = {"architecture": arch}
        for key, name in _GGUF_CONFIG.items():
            if f"{arch}.{key}" in f:
                config[name] = f[f"{arch}.{key}"]
        if "vocab_size" not in config and weights.gguf_tokens is not None:
            config["vocab_size"] = len(weights.gguf_tokens)
        special = {k: _int_or_none(f.get(v)) for k, v in _GGUF_SPECIAL.items()}
        template = f.get("tokenizer.chat_template")
        merges = f.get("tokenizer.ggml.merges")
        return BundleMeta(
            weights.gguf_tokens,
            special,
            template if isinstance(template, str) else None,
            merges if isinstance(merges, str) else None,
            config,
        )
    root = bundle if bundle.is_dir() else bundle.parent
    cfg = _json(root / "config.json") or {}
    tok = _json(root / "tokenizer.json")
    tok_cfg = _json(root / "tokenizer_config.json") or {}
    config = {"architecture": _architecture(cfg)}
    for name in _GGUF_CONFIG.values():
        if name in cfg:
            config[name] = cfg[name]
    rope = cfg.get("rope_parameters")
    if "rope_theta" not in config and isinstance(rope, dict) and "rope_theta" in rope:
        config["rope_theta"] = rope["rope_theta"]
    vocab = merges = None
    if isinstance(tok, dict):
        vocab = _hf_vocab(tok)
        model = tok.get("model")
        if isinstance(model, dict) and isinstance(model.get("merges"), list):
            merges = _hf_merges_digest(model["merges"])
    special = {k: _int_or_none(cfg.get(f"{k}_token_id")) for k in SPECIAL}
    if vocab is not None:
        for k in SPECIAL:
            token = tok_cfg.get(f"{k}_token")
            if special[k] is None and isinstance(token, str) and token in vocab:
                special[k] = vocab.index(token)
    template_file = root / "chat_template.jinja"
    template = tok_cfg.get("chat_template")
    if template_file.is_file():
        template = template_file.read_text(encoding="utf-8", errors="replace")
    generation = _json(root / "generation_config.json")
    pipeline = None
    if isinstance(tok, dict):
        parts = {k: tok.get(k) for k in _PIPELINE}
        pipeline = hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()
    custom = sorted(
        f"{name}:{key}"
        for name, source in (("config.json", cfg), ("tokenizer_config.json", tok_cfg))
        if isinstance(source.get("auto_map"), dict)
        for key in source["auto_map"]
    )
    return BundleMeta(
        vocab,
        special,
        template if isinstance(template, str) else None,
        merges,
        config,
        full_config=_stable(cfg) if cfg else None,
        generation=_stable(generation) if isinstance(generation, dict) else None,
        pipeline=pipeline,
        custom_code=tuple(custom),
    )


_PIPELINE = ("normalizer", "pre_tokenizer", "post_processor", "decoder", "added_tokens")
_VOLATILE = ("_name_or_path", "transformers_version")


def _stable(document: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k not in _VOLATILE}


def _architecture(cfg: dict[str, Any]) -> str | None:
    model_type = cfg.get("model_type")
    return model_type if isinstance(model_type, str) else None


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    if path.stat().st_size > _MAX_JSON:
        raise InputError(f"{path.name} is larger than {_MAX_JSON} bytes")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path.name} is not valid JSON: {exc}") from exc


def _int_or_none(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _hf_vocab(tok: dict[str, Any]) -> list[str] | None:
    model = tok.get("model")
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict):
        return None
    by_id: dict[int, str] = {}
    for token, idx in model["vocab"].items():
        if isinstance(idx, int):
            by_id[idx] = token
    for added in tok.get("added_tokens") or []:
        if isinstance(added, dict) and isinstance(added.get("id"), int):
            by_id[added["id"]] = str(added.get("content"))
    size = max(by_id) + 1 if by_id else 0
    return [by_id.get(i, "") for i in range(size)]


def _hf_merges_digest(merges: list[Any]) -> str:
    joined = [m if isinstance(m, str) else " ".join(map(str, m)) for m in merges]
    return "sha256:" + hashlib.sha256(json.dumps(joined, default=str).encode()).hexdigest()


def _sha(text: str | None) -> str | None:
    return None if text is None else "sha256:" + hashlib.sha256(text.encode()).hexdigest()


def meta_differences(candidate: BundleMeta, base: BundleMeta) -> dict[str, Any]:
    """Each difference, by topic; `findings` lists the ones a quantisation or a fine-tune of the
    base should not have (a changed vocabulary, special tokens or chat template)."""
    out: dict[str, Any] = {}
    findings: list[str] = []
    vocab: dict[str, Any] = {"changed": False}
    if candidate.vocab is None or base.vocab is None:
        vocab.update(changed=candidate.vocab != base.vocab, known=False)
    else:
        c, b = candidate.vocab, base.vocab
        differing = [i for i in range(min(len(c), len(b))) if c[i] != b[i]]
        vocab.update(
            changed=bool(differing) or len(c) != len(b),
            candidate_size=len(c),
            base_size=len(b),
            changed_ids=len(differing),
            examples=[{"id": i, "base": b[i], "candidate": c[i]} for i in differing[:10]],
            added=[{"id": i, "token": c[i]} for i in range(len(b), len(c))][:10],
            removed=max(0, len(b) - len(c)),
        )
    out["vocabulary"] = vocab
    if vocab["changed"]:
        findings.append("the vocabulary differs from the base's")
    special = {
        k: {"base": base.special.get(k), "candidate": candidate.special.get(k)}
        for k in SPECIAL
        if base.special.get(k) != candidate.special.get(k)
    }
    out["special_tokens"] = {"changed": bool(special), "differences": special}
    if special:
        findings.append(f"special tokens differ: {', '.join(sorted(special))}")
    template_changed = candidate.chat_template != base.chat_template
    out["chat_template"] = {
        "changed": template_changed,
        "base": _sha(base.chat_template),
        "candidate": _sha(candidate.chat_template),
    }
    if template_changed:
        findings.append("the chat template differs from the base's")
    merges_known = candidate.merges_digest is not None and base.merges_digest is not None
    out["tokenizer"] = {
        "merges_compared": merges_known,
        "changed": merges_known and candidate.merges_digest != base.merges_digest,
    }
    if out["tokenizer"]["changed"]:
        findings.append("the tokenizer's merges differ from the base's")
    config: dict[str, Any] = {}
    for key in sorted(set(candidate.config) | set(base.config)):
        old, new = base.config.get(key), candidate.config.get(key)
        if key in base.config and key in candidate.config and not _same_value(old, new):
            config[key] = {"base": old, "candidate": new}
    if candidate.full_config is not None and base.full_config is not None:
        for key in sorted(set(candidate.full_config) | set(base.full_config)):
            old, new = base.full_config.get(key), candidate.full_config.get(key)
            if key not in config and not _same_value(old, new):
                config[key] = {"base": old, "candidate": new}
    out["config"] = {"changed": bool(config), "differences": config}
    if config:
        findings.append(f"configuration differs: {', '.join(sorted(config))}")
    generation_keys: list[str] = []
    if candidate.generation is not None and base.generation is not None:
        generation_keys = sorted(
            k
            for k in set(candidate.generation) | set(base.generation)
            if not _same_value(candidate.generation.get(k), base.generation.get(k))
        )
    out["generation_config"] = {"changed": bool(generation_keys), "keys": generation_keys}
    if generation_keys:
        findings.append(f"generation_config.json differs: {', '.join(generation_keys)}")
    pipelines = candidate.pipeline is not None and base.pipeline is not None
    out["tokenizer"]["pipeline_changed"] = pipelines and candidate.pipeline != base.pipeline
    if out["tokenizer"]["pipeline_changed"]:
        findings.append(
            "the tokenizer's pipeline (normalizer, pre-tokenizer, post-processor, decoder or "
            "added tokens) differs from the base's"
        )
    added_code = sorted(set(candidate.custom_code) - set(base.custom_code))
    out["custom_code"] = {"candidate": list(candidate.custom_code), "added": added_code}
    if added_code:
        findings.append(
            f"the bundle maps in custom code the base does not: {', '.join(added_code)}"
        )
    out["findings"] = findings
    return out


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-12)
    return bool(a == b)
