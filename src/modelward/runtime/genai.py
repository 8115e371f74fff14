"""What a GenAI span says, read from its attributes: OpenTelemetry GenAI semantic conventions at
the pinned version (`SEMCONV_VERSION`), their older names, and OpenInference.

`read_span` turns a decoded `otlp.Span` into `SpanFacts`: the measured signals (tokens,
latency, time to first token, finish reason, tool calls, safety, feedback) and the claims it
makes about what served it (release id, model, version, environment, response model). Deciding
which release that was is the telemetry service's job (it reads the registry). Prompt and output
text is returned only when asked for (`with_content`), for an opt-in refusal classifier or for
storage when configured. Pure: no I/O.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from modelward.errors import InputError
from modelward.runtime.otlp import AttrValue, Span

SEMCONV_VERSION = "1.41.0"  # the GenAI semantic conventions read here (older names too)

# Sane bounds per signal: a span outside them is refused (the request is malformed), so that no
# stored value can overflow a statistic (a sum of squares of 1e308 is inf, then nan).
MAX_FEEDBACK = 1e6  # |feedback score|
MAX_SECONDS = 86_400.0  # span duration, time to first token, time per output token: one day
MAX_TOKENS = 1_000_000_000  # input or output tokens of one span

# A refusal classifier: the output text in, "was this a refusal?" out. Opt-in; none by default.
RefusalClassifier = Callable[[str], bool]

_FINISH = {
    "stop": "stop",
    "end_turn": "stop",
    "eos": "stop",
    "stop_sequence": "stop",
    "complete": "stop",
    "length": "length",
    "max_tokens": "length",
    "max_output_tokens": "length",
    "content_filter": "content_filter",
    "safety": "content_filter",
    "recitation": "content_filter",
    "blocked": "content_filter",
    "tool_calls": "tool_calls",
    "tool_call": "tool_calls",
    "tool_use": "tool_calls",
    "function_call": "tool_calls",
    "error": "error",
}
_OI_TOOL_CALL = re.compile(r"^llm\.output_messages\.(\d+)\.message\.tool_calls\.(\d+)\.")
_GENAI_MARKERS = ("gen_ai.", "llm.", "openinference.")


@dataclass(frozen=True)
class SpanFacts:
    # what served it, as the span claims
    release_id: str | None
    model: str | None
    version: int | None
    environment: str | None
    response_model: str | None
    arm: str | None
    # what it measured
    error: bool
    duration_s: float | None
    ttft_s: float | None
    tpot_s: float | None
    input_tokens: int | None
    output_tokens: int | None
    finish_reason: str | None
    refusal: bool | None
    tool_calls: int | None
    safety_triggered: bool | None
    feedback: float | None
    input_text: str | None = None
    output_text: str | None = None


def is_genai_span(span: Span) -> bool:
    """Whether the span describes a model call (GenAI or OpenInference attributes), as opposed
    to the HTTP and database spans a service also emits."""
    if any(key.startswith(_GENAI_MARKERS) for key in span.attributes):
        return True
    return any(key.startswith("modelward.") for key in span.attributes)


def read_span(
    span: Span,
    *,
    with_content: bool = False,
    refusal_classifier: RefusalClassifier | None = None,
) -> SpanFacts:
    """The facts one GenAI span states (InputError on a wrong type or an impossible value)."""
    attrs, resource = span.attributes, span.resource

    def claim(*keys: str) -> AttrValue:
        for source in (attrs, resource):
            for key in keys:
                if source.get(key) is not None:
                    return source[key]
        return None

    if span.end_unix_nano < span.start_unix_nano:
        raise InputError(f"span {span.span_id}: it ends before it starts")
    duration = (span.end_unix_nano - span.start_unix_nano) / 1e9 if span.start_unix_nano else None
    if duration is not None and duration > MAX_SECONDS:
        raise InputError(f"span {span.span_id}: it lasts more than {MAX_SECONDS:.0f} seconds")
    output_tokens = _count(
        claim(
            "gen_ai.usage.output_tokens",
            "gen_ai.usage.completion_tokens",
            "llm.token_count.completion",
        ),
        span,
        "output tokens",
    )
    input_tokens = _count(
        claim("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens", "llm.token_count.prompt"),
        span,
        "input tokens",
    )
    ttft = _seconds(
        claim(
            "gen_ai.server.time_to_first_token",
            "gen_ai.response.time_to_first_chunk",
            "modelward.ttft_s",
        ),
        span,
        "time to first token",
    )
    if ttft is None:
        ttft = _first_token_event(span)
    tpot = _seconds(
        claim("gen_ai.server.time_per_output_token", "modelward.tpot_s"),
        span,
        "time per output token",
    )
    if (
        tpot is None
        and ttft is not None
        and duration is not None
        and output_tokens is not None
        and output_tokens > 1
        and duration >= ttft
    ):
        tpot = (duration - ttft) / (output_tokens - 1)
    finish = _finish_reason(attrs, span)
    error = span.status_code == 2 or attrs.get("error.type") is not None
    if finish is None and error:
        finish = "error"
    safety = _flag(
        claim("modelward.safety.triggered", "modelward.safety_triggered"), span, "safety"
    )
    if finish == "content_filter":
        safety = True
    output_text = _output_text(attrs)
    refusal = _flag(claim("modelward.refusal"), span, "refusal")
    if refusal is None and refusal_classifier is not None and output_text is not None:
        refusal = bool(refusal_classifier(output_text))
    feedback = claim("modelward.feedback.score", "modelward.feedback", "user_feedback.score")
    if feedback is not None and (
        isinstance(feedback, bool) or not isinstance(feedback, int | float)
    ):
        raise InputError(f"span {span.span_id}: the feedback score must be a number")
    if feedback is not None and not abs(feedback) <= MAX_FEEDBACK:
        raise InputError(
            f"span {span.span_id}: the feedback score must be within ±{MAX_FEEDBACK:.0e}"
        )
    return SpanFacts(
        release_id=_text(claim("modelward.release", "modelward.release_id"), span, "release"),
        model=_text(claim("modelward.model"), span, "model"),
        version=_count(claim("modelward.version"), span, "version"),
        environment=_text(
            claim("modelward.environment", "deployment.environment.name", "deployment.environment"),
            span,
            "environment",
        ),
        response_model=_text(
            claim("gen_ai.response.model", "gen_ai.request.model", "llm.model_name"),
            span,
            "response model",
        ),
        arm=_text(claim("modelward.arm"), span, "arm"),
        error=error,
        duration_s=duration,
        ttft_s=ttft,
        tpot_s=tpot,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        finish_reason=finish,
        refusal=refusal,
        tool_calls=_tool_calls(attrs, span),
        safety_triggered=safety,
        feedback=float(feedback) if feedback is not None else None,
        input_text=_input_text(attrs) if with_content else None,
        output_text=output_text if with_content else None,
    )


def normalise_finish_reason(value: str) -> str:
    return _FINISH.get(value.strip().lower(), "other")


def _finish_reason(attrs: Mapping[str, AttrValue], span: Span) -> str | None:
    raw = attrs.get("gen_ai.response.finish_reasons", attrs.get("gen_ai.response.finish_reason"))
    if raw is None:
        raw = attrs.get("llm.output_messages.0.message.finish_reason")
    if raw is None:
        return None
    if isinstance(raw, str):
        return normalise_finish_reason(raw)
    if isinstance(raw, list) and all(isinstance(item, str) for item in raw):
        if not raw:
            return None
        reasons = [normalise_finish_reason(item) for item in raw]
        for preferred in ("content_filter", "error", "length", "tool_calls"):
            if preferred in reasons:  # the one a judge must not miss, when choices differ
                return preferred
        return reasons[0]
    raise InputError(f"span {span.span_id}: gen_ai.response.finish_reasons must be strings")


def _tool_calls(attrs: Mapping[str, AttrValue], span: Span) -> int | None:
    given = attrs.get("modelward.tool_calls")
    if given is not None:
        return _count(given, span, "tool calls")
    seen = {m.groups() for key in attrs if (m := _OI_TOOL_CALL.match(key))}
    if seen:
        return len(seen)
    messages = _json_messages(attrs.get("gen_ai.output.messages"))
    if messages is not None:
        return sum(
            1
            for message in messages
            for part in (message.get("parts") or [])
            if isinstance(part, dict) and part.get("type") == "tool_call"
        )
    return None


def _first_token_event(span: Span) -> float | None:
    for event in span.events:
        named = event.name in ("gen_ai.first_token", "first_token", "llm.first_token")
        if named and event.time_unix_nano >= span.start_unix_nano > 0:
            return (event.time_unix_nano - span.start_unix_nano) / 1e9
    return None


def _json_messages(raw: AttrValue) -> list[dict[str, Any]] | None:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return None
    if isinstance(raw, list) and all(isinstance(item, dict) for item in raw):
        return raw
    return None


def _output_text(attrs: Mapping[str, AttrValue]) -> str | None:
    messages = _json_messages(attrs.get("gen_ai.output.messages"))
    if messages:
        texts = [
            str(part.get("content", ""))
            for message in messages
            for part in (message.get("parts") or [])
            if isinstance(part, dict) and part.get("type") == "text"
        ]
        if texts:
            return "\n".join(texts)
    for key in (
        "gen_ai.completion",
        "gen_ai.completion.0.content",
        "llm.output_messages.0.message.content",
        "output.value",
    ):
        value = attrs.get(key)
        if isinstance(value, str):
            return value
    return None


def _input_text(attrs: Mapping[str, AttrValue]) -> str | None:
    for key in (
        "gen_ai.input.messages",
        "gen_ai.prompt",
        "gen_ai.prompt.0.content",
        "llm.input_messages.0.message.content",
        "input.value",
    ):
        value = attrs.get(key)
        if isinstance(value, str):
            return value
    return None


def _count(value: AttrValue, span: Span, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.isdigit() and len(value) < 19:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise InputError(
            f"span {span.span_id}: {what} must be a non-negative integer up to {MAX_TOKENS:.0e}"
        )
    return value


def _seconds(value: AttrValue, span: Span, what: str) -> float | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not 0 <= value <= MAX_SECONDS
    ):
        raise InputError(
            f"span {span.span_id}: {what} must be a number of seconds up to {MAX_SECONDS:.0f}"
        )
    return float(value)


def _flag(value: AttrValue, span: Span, what: str) -> bool | None:
    if value is None:
        return None
    if not isinstance(value, bool):
        raise InputError(f"span {span.span_id}: {what} must be true or false")
    return value


_TEXT_LIMITS = {"release": 64, "environment": 100, "arm": 40}  # the columns' widths


def _text(value: AttrValue, span: Span, what: str) -> str | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and what == "release":
        value = str(value)
    limit = _TEXT_LIMITS.get(what, 200)
    if not isinstance(value, str) or not value or len(value) > limit:
        raise InputError(f"span {span.span_id}: the {what} must be a string of 1 to {limit}")
    return value


def keyword_refusal_classifier(text: str) -> bool:
    """A plain opt-in classifier: the output opens with a stock refusal phrase."""
    head = text.strip().lower()[:200]
    return any(
        phrase in head
        for phrase in (
            "i can't help with",
            "i cannot help with",
            "i can't assist",
            "i cannot assist",
            "i'm sorry, but i can",
            "i am sorry, but i can",
            "i won't be able to",
            "i'm not able to help",
        )
    )
