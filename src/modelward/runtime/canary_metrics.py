"""The canary metric catalogue: what each judged metric reads from a request (and which GenAI
metric signal may stand in for it), its direction and default amounts, and `MetricSpec`, a
metric as a canary plan names it (`NAME[:lower|higher][:TOLERANCE[:EFFECT]]`). Pure.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from modelward.core.observations import Observation
from modelward.errors import InputError

Extractor = Callable[[Observation], float | None]


def _flag(value: bool | None) -> float | None:
    return None if value is None else (1.0 if value else 0.0)


def _finish_length(o: Observation) -> float | None:
    return None if o.finish_reason is None else (1.0 if o.finish_reason == "length" else 0.0)


def _number(value: float | int | None) -> float | None:
    return None if value is None else float(value)


@dataclass(frozen=True)
class MetricKind:
    name: str
    proportion: bool
    lower_is_better: bool
    extract: Extractor
    default_tolerance: tuple[float, bool]  # (value, relative)
    default_effect: tuple[float, bool]
    description: str
    signals: tuple[str, ...] = ()  # metric signals that may stand in for the spans


METRICS: dict[str, MetricKind] = {
    m.name: m
    for m in (
        MetricKind(
            "error",
            True,
            True,
            lambda o: _flag(o.error),
            (0.0, False),
            (0.01, False),
            "share of requests that failed",
            ("gen_ai.client.operation.duration",),
        ),
        MetricKind(
            "refusal",
            True,
            True,
            lambda o: _flag(o.refusal),
            (0.0, False),
            (0.02, False),
            "share of answered requests the classifier called refusals",
        ),
        MetricKind(
            "safety",
            True,
            True,
            lambda o: _flag(o.safety_triggered),
            (0.0, False),
            (0.01, False),
            "share of requests that triggered a safety filter",
        ),
        MetricKind(
            "truncation",
            True,
            True,
            _finish_length,
            (0.0, False),
            (0.02, False),
            "share of requests that stopped on the length limit",
        ),
        MetricKind(
            "latency",
            False,
            True,
            lambda o: _number(o.duration_s),
            (0.0, True),
            (0.1, True),
            "mean request duration, seconds",
            ("gen_ai.client.operation.duration", "gen_ai.server.request.duration"),
        ),
        MetricKind(
            "ttft",
            False,
            True,
            lambda o: _number(o.ttft_s),
            (0.0, True),
            (0.1, True),
            "mean time to first token, seconds",
            ("gen_ai.server.time_to_first_token",),
        ),
        MetricKind(
            "tpot",
            False,
            True,
            lambda o: _number(o.tpot_s),
            (0.0, True),
            (0.1, True),
            "mean time per output token, seconds",
            ("gen_ai.server.time_per_output_token",),
        ),
        MetricKind(
            "output_tokens",
            False,
            True,
            lambda o: _number(o.output_tokens),
            (0.0, True),
            (0.1, True),
            "mean output tokens",
            ("gen_ai.client.token.usage.output",),
        ),
        MetricKind(
            "feedback",
            False,
            False,
            lambda o: _number(o.feedback),
            (0.0, True),
            (0.05, True),
            "mean user feedback score",
            ("modelward.feedback.score",),
        ),
    )
}


def _amount(text: str, what: str) -> tuple[float, bool]:
    raw = text.strip().lstrip("+")
    relative = raw.endswith("%")
    try:
        value = float(raw[:-1] if relative else raw)
    except ValueError:
        raise InputError(f"{what} {text!r} is not a number or a percentage") from None
    if not math.isfinite(value) or value < 0:
        raise InputError(f"{what} {text!r} must be a finite number >= 0")
    return (value / 100.0 if relative else value), relative


@dataclass(frozen=True)
class MetricSpec:
    """One judged metric: its direction and the degradation it tolerates (absolute, or relative
    to the baseline's mean), and the effect size the test is tuned to detect (the mixing scale
    τ)."""

    name: str
    lower_is_better: bool
    tolerance: float
    tolerance_relative: bool
    effect: float
    effect_relative: bool

    @property
    def kind(self) -> MetricKind:
        return METRICS[self.name]

    @classmethod
    def default(cls, name: str) -> MetricSpec:
        return cls.parse(name)

    @classmethod
    def parse(cls, text: str) -> MetricSpec:
        """`NAME[:lower|higher][:TOLERANCE[:EFFECT]]`; an amount ending in `%` is relative to
        the baseline's mean (`latency:10%`), otherwise absolute (`refusal:0.01` is one point)."""
        parts = [p.strip() for p in text.split(":")]
        name = parts.pop(0)
        kind = METRICS.get(name)
        if kind is None:
            raise InputError(f"unknown canary metric {name!r}; known: {', '.join(sorted(METRICS))}")
        lower = kind.lower_is_better
        if parts and parts[0] in ("lower", "higher"):
            lower = parts.pop(0) == "lower"
        if len(parts) > 2:
            raise InputError(f"metric {text!r} is not NAME[:lower|higher][:TOLERANCE[:EFFECT]]")
        tolerance = _amount(parts[0], "tolerance") if parts else kind.default_tolerance
        effect = _amount(parts[1], "effect") if len(parts) > 1 else kind.default_effect
        if effect[0] <= 0:
            raise InputError(f"the effect of metric {name} must be > 0")
        return cls(name, lower, tolerance[0], tolerance[1], effect[0], effect[1])

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "direction": "lower" if self.lower_is_better else "higher",
            "tolerance": self.tolerance,
            "tolerance_relative": self.tolerance_relative,
            "effect": self.effect,
            "effect_relative": self.effect_relative,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MetricSpec:
        name = str(data["name"])
        if name not in METRICS:
            raise InputError(f"unknown canary metric {name!r}")
        return cls(
            name,
            data["direction"] == "lower",
            float(data["tolerance"]),
            bool(data["tolerance_relative"]),
            float(data["effect"]),
            bool(data["effect_relative"]),
        )

    def spec_text(self) -> str:
        def amount(value: float, relative: bool) -> str:
            return f"{value * 100:g}%" if relative else f"{value:g}"

        direction = "lower" if self.lower_is_better else "higher"
        return (
            f"{self.name}:{direction}:{amount(self.tolerance, self.tolerance_relative)}"
            f":{amount(self.effect, self.effect_relative)}"
        )


DEFAULT_METRICS = ("error:0.01", "refusal:0.01", "latency:5%")
