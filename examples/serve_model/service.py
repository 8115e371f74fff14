"""The example service: a causal language model in transformers format, loaded with
`modelward.load` (verified, cached), greedy generation on CPU, one OTel GenAI span per request.

Spans are OTLP JSON (proto3 JSON mapping) built here, sent in batches to `OTLP_URL/v1/traces`
with a bearer token, or appended as JSON lines to a file for `modelward telemetry ingest`.
Degradation knobs (`Degradation`) make the service worse on purpose, for canary tests: extra
latency per request, a share of forced refusals, a share of errors.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REFUSAL = "I'm sorry, but I can't help with that."


@dataclass
class Degradation:
    latency_s: float = 0.0  # added to every request, before the first token
    refusal_rate: float = 0.0  # share of requests answered with a refusal
    error_rate: float = 0.0  # share of requests that fail
    seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "latency_s": self.latency_s,
            "refusal_rate": self.refusal_rate,
            "error_rate": self.error_rate,
            "seed": self.seed,
        }


@dataclass
class ServiceConfig:
    uri: str  # models:/NAME/N or models:/NAME@ENV
    environment: str | None = None  # require (and report) this environment's current release
    cache_dir: str | None = None
    otlp_url: str | None = None  # a modelward server: spans go to OTLP_URL/v1/traces
    otlp_token: str | None = None
    span_file: str | None = None  # or: OTLP JSON lines appended here
    arm: str | None = None  # "canary", "baseline", "shadow"
    batch_size: int = 16
    degradation: Degradation = field(default_factory=Degradation)


class ModelService:
    def __init__(self, config: ServiceConfig) -> None:
        from modelward.runtime.loading import load_bundle

        self.config = config
        loaded = load_bundle(config.uri, cache_dir=config.cache_dir, environment=config.environment)
        self.path = loaded.path
        self.uri = loaded.uri  # models:/NAME/N
        self.release_id = loaded.release_id
        self.model_name, version = self.uri.removeprefix("models:/").rsplit("/", 1)
        self.version = int(version)
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        torch.manual_seed(0)
        self.torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(str(self.path), local_files_only=True)
        self.model = AutoModelForCausalLM.from_pretrained(str(self.path), local_files_only=True)
        self.model.eval()
        self._random = random.Random(config.degradation.seed)
        self._pending: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def set_degradation(self, degradation: Degradation) -> None:
        with self._lock:
            self.config.degradation = degradation
            self._random = random.Random(degradation.seed)

    def generate(self, prompt: str, max_new_tokens: int = 16) -> dict[str, Any]:
        """Greedy generation; returns the text and the measured signals, and records a span."""
        start = time.time_ns()
        with self._lock:
            knobs = self.config.degradation
            refuse = self._random.random() < knobs.refusal_rate
            fail = self._random.random() < knobs.error_rate
        if knobs.latency_s > 0:
            time.sleep(knobs.latency_s)
        ids = self.tokenizer(prompt, return_tensors="pt")["input_ids"]
        input_tokens = int(ids.shape[1])
        first_token_ns = None
        generated: list[int] = []
        finish = "length"
        error = None
        try:
            if fail:
                raise RuntimeError("forced failure (degradation knob)")
            with self.torch.no_grad():
                past = None
                step_input = ids
                for _ in range(max_new_tokens):
                    out = self.model(input_ids=step_input, past_key_values=past, use_cache=True)
                    past = out.past_key_values
                    token = int(out.logits[0, -1].argmax())
                    if first_token_ns is None:
                        first_token_ns = time.time_ns()
                    generated.append(token)
                    if token == self.tokenizer.eos_token_id:
                        finish = "stop"
                        break
                    step_input = self.torch.tensor([[token]])
            text = REFUSAL if refuse else self.tokenizer.decode(generated)
        except RuntimeError as exc:
            error, text, finish = str(exc), "", "error"
        end = time.time_ns()
        ttft = (first_token_ns - start) / 1e9 if first_token_ns else None
        tpot = (
            (end - first_token_ns) / 1e9 / (len(generated) - 1)
            if first_token_ns and len(generated) > 1
            else None
        )
        result = {
            "text": text,
            "model": self.uri,
            "release_id": self.release_id,
            "input_tokens": input_tokens,
            "output_tokens": len(generated),
            "finish_reason": finish,
            "ttft_s": ttft,
            "tpot_s": tpot,
            "refusal": refuse,
            "error": error,
        }
        self._record(start, end, result)
        return result

    # -- telemetry ---------------------------------------------------------------------------

    def _record(self, start: int, end: int, result: dict[str, Any]) -> None:
        attributes: list[dict[str, Any]] = [
            _attr("gen_ai.operation.name", "chat"),
            _attr("gen_ai.provider.name", "modelward.example"),
            _attr("gen_ai.request.model", self.uri),
            _attr("gen_ai.response.model", self.uri),
            _attr("gen_ai.usage.input_tokens", result["input_tokens"]),
            _attr("gen_ai.usage.output_tokens", result["output_tokens"]),
            _attr("gen_ai.response.finish_reasons", [result["finish_reason"]]),
            _attr("modelward.refusal", bool(result["refusal"])),
        ]
        if result["ttft_s"] is not None:
            attributes.append(_attr("gen_ai.server.time_to_first_token", float(result["ttft_s"])))
        if result["tpot_s"] is not None:
            attributes.append(_attr("gen_ai.server.time_per_output_token", float(result["tpot_s"])))
        if result["error"]:
            attributes.append(_attr("error.type", "RuntimeError"))
        span = {
            "traceId": os.urandom(16).hex(),
            "spanId": os.urandom(8).hex(),
            "name": f"chat {self.model_name}",
            "kind": 2,  # server
            "startTimeUnixNano": str(start),
            "endTimeUnixNano": str(end),
            "attributes": attributes,
            "status": {"code": 2 if result["error"] else 1},
        }
        with self._lock:
            self._pending.append(span)
            full = len(self._pending) >= self.config.batch_size
        if full:
            self.flush()

    def _resource(self) -> list[dict[str, Any]]:
        resource = [
            _attr("service.name", "serve_model"),
            _attr("modelward.model", self.model_name),
            _attr("modelward.version", self.version),
        ]
        if self.release_id is not None:
            resource.append(_attr("modelward.release", self.release_id))
        if self.config.environment is not None:
            resource.append(_attr("deployment.environment.name", self.config.environment))
        if self.config.arm is not None:
            resource.append(_attr("modelward.arm", self.config.arm))
        return resource

    def flush(self) -> dict[str, Any] | None:
        """Send the spans recorded so far; the server's answer (or None for a file)."""
        with self._lock:
            spans, self._pending = self._pending, []
        if not spans:
            return None
        body = json.dumps(
            {
                "resourceSpans": [
                    {
                        "resource": {"attributes": self._resource()},
                        "scopeSpans": [{"scope": {"name": "serve_model"}, "spans": spans}],
                    }
                ]
            }
        )
        if self.config.span_file is not None:
            with open(self.config.span_file, "a", encoding="utf-8") as handle:
                handle.write(body + "\n")
            return None
        if self.config.otlp_url is not None:
            import httpx

            headers = {"content-type": "application/json"}
            if self.config.otlp_token:
                headers["authorization"] = f"Bearer {self.config.otlp_token}"
            response = httpx.post(
                self.config.otlp_url.rstrip("/") + "/v1/traces",
                content=body,
                headers=headers,
                timeout=30,
            )
            response.raise_for_status()
            answer: dict[str, Any] = response.json()
            return answer
        return None


def _attr(key: str, value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"key": key, "value": {"boolValue": value}}
    if isinstance(value, int):
        return {"key": key, "value": {"intValue": str(value)}}
    if isinstance(value, float):
        return {"key": key, "value": {"doubleValue": value}}
    if isinstance(value, list):
        values = [{"stringValue": v} for v in value]
        return {"key": key, "value": {"arrayValue": {"values": values}}}
    return {"key": key, "value": {"stringValue": str(value)}}


def make_tiny_model(folder: Path, seed: int = 0) -> Path:
    """A tiny randomly initialised GPT-2 with a byte-level BPE tokenizer trained on a few lines,
    saved by transformers (safetensors): a real model for tests, made without any download."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>", "<eos>"])
    lines = ["the model answers questions", "what is the capital of france", "paris is a city"]
    tokenizer.train_from_iterator(lines * 10, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, unk_token="<unk>", eos_token="<eos>")
    fast.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=fast.vocab_size,
        n_positions=128,
        n_embd=32,
        n_layer=2,
        n_head=2,
        eos_token_id=fast.eos_token_id,
        bos_token_id=fast.eos_token_id,
    )
    GPT2LMHeadModel(config).save_pretrained(str(folder))
    return folder
