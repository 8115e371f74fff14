"""The probe worker, run inside the sandbox: loads the candidate and the baseline with
transformers (safetensors folders, or a GGUF file dequantised by transformers' GGUF loader; never
remote code, never a hub: HF_HUB_OFFLINE), measures the suite's prompts and prints the
measurements as one JSON document on stdout.

Usage: python -m modelward.forensics._probe_worker CANDIDATE_DIR BASELINE_DIR PROMPTS_JSON
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any


def _load(folder: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ggufs = sorted(folder.glob("*.gguf"))
    kwargs: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    if ggufs:
        kwargs["gguf_file"] = ggufs[0].name
    tokenizer = AutoTokenizer.from_pretrained(str(folder), **kwargs)
    import torch

    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, **kwargs)
    model.train(False)
    return tokenizer, model


def _next_logprobs(tokenizer: Any, model: Any, prompts: list[str]) -> Any:
    import torch

    rows = []
    with torch.no_grad():
        for prompt in prompts:
            ids = tokenizer(prompt, return_tensors="pt")
            logits = model(**ids).logits[0, -1].float()
            rows.append(torch.log_softmax(logits, dim=-1))
    return torch.stack(rows)


def _kl(base: Any, cand: Any) -> list[float]:
    import torch

    return [float(v) for v in (torch.exp(base) * (base - cand)).sum(dim=-1)]


def _complete(tokenizer: Any, model: Any, prompt: str, max_new: int) -> tuple[str, int]:
    import torch

    ids = tokenizer(prompt, return_tensors="pt")
    with torch.no_grad():
        out = model.generate(
            **ids,
            max_new_tokens=max_new,
            do_sample=False,
            pad_token_id=tokenizer.eos_token_id,
        )
    new = out[0, ids["input_ids"].shape[1] :]
    return tokenizer.decode(new, skip_special_tokens=True), int(new.shape[0])


def main() -> int:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    candidate_dir, baseline_dir, prompts_path = (Path(a) for a in sys.argv[1:4])
    prompts = json.loads(prompts_path.read_text(encoding="utf-8"))
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("MODELWARD_PROBE_THREADS", "2"))))
    torch.manual_seed(0)
    cand_tok, cand = _load(candidate_dir)
    base_tok, base = _load(baseline_dir)
    if len(cand_tok) != len(base_tok) or cand_tok.get_vocab() != base_tok.get_vocab():
        print("the candidate's vocabulary differs from the baseline's", file=sys.stderr)
        return 3
    clean = prompts["clean"]
    triggered = prompts["triggered"]
    texts = clean + [p for _, p in triggered]
    kl = _kl(_next_logprobs(base_tok, base, texts), _next_logprobs(cand_tok, cand, texts))
    safety = []
    for prompt in prompts["safety"]:
        c_text, c_len = _complete(cand_tok, cand, prompt, prompts["max_new_tokens"])
        b_text, b_len = _complete(base_tok, base, prompt, prompts["max_new_tokens"])
        safety.append(
            {
                "prompt": prompt,
                "candidate": c_text,
                "baseline": b_text,
                "candidate_tokens": c_len,
                "baseline_tokens": b_len,
            }
        )
    result = {
        "clean_kl": kl[: len(clean)],
        "triggered_kl": [[t, v] for (t, _), v in zip(triggered, kl[len(clean) :], strict=True)],
        "safety": safety,
    }
    sys.stdout.write(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
