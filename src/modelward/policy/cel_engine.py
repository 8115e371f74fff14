"""The CEL adapter: compiles rule expressions with `cel-expr-python` and evaluates them on facts.

Expressions see one variable, `facts` (a map from string to dynamic values), and CEL's standard
library (`timestamp()`, `duration()`, `has()`, `all`, `exists`, `filter`, `size`, ...). Compiled
expressions are cached by their text, so a policy compiles once and evaluates many times. Errors
become `PolicyError` naming the line and column. This is the only module that imports the CEL
library; another engine replaces it by implementing `modelward.core.policy.PolicyEngine`.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from modelward.errors import DependencyError, PolicyError

FACTS_VARIABLE = "facts"
_CACHE_LIMIT = 4096
_POSITION = re.compile(r"<input>:(\d+):(\d+):\s*(.*)")

try:
    from cel_expr_python import cel as _cel
except ImportError:  # pragma: no cover - exercised only without the extra installed
    _cel = None


def _require_cel() -> Any:
    if _cel is None:
        raise DependencyError(
            "evaluating policies needs the CEL engine: pip install 'modelward[policy]'"
        )
    return _cel


@dataclass(frozen=True)
class ExpressionPosition:
    line: int
    column: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.reason}"


def parse_compile_error(text: str) -> ExpressionPosition | None:
    """Pull the first `<input>:LINE:COL: reason` out of a CEL compiler message."""
    match = _POSITION.search(text)
    if not match:
        return None
    reason = match.group(3).strip()
    return ExpressionPosition(int(match.group(1)), int(match.group(2)), reason)


class CelExpression:
    """A compiled CEL expression; `evaluate` returns a plain Python value or raises PolicyError."""

    __slots__ = ("_compiled", "_engine", "expression")

    def __init__(self, engine: CelEngine, compiled: Any, expression: str) -> None:
        self._engine = engine
        self._compiled = compiled
        self.expression = expression

    def evaluate(self, facts: Mapping[str, Any]) -> object:
        return self._engine.bind(facts).evaluate(self)

    def _eval_activation(self, activation: Any) -> object:
        result = self._compiled.eval(activation)
        value = result.value()
        if value is True or value is False:  # the common case; an error's value is a str
            return value
        if result.type() == self._engine._error_type:
            raise PolicyError(f"evaluation error: {value}")
        return result.plain_value()


class CelBoundFacts:
    """Facts turned into a CEL activation once, shared by every rule of one decision."""

    __slots__ = ("_activation", "_facts")

    def __init__(self, activation: Any, facts: Mapping[str, Any]) -> None:
        self._activation = activation
        self._facts = facts

    def evaluate(self, compiled: Any) -> object:
        if isinstance(compiled, CelExpression):
            return compiled._eval_activation(self._activation)
        return compiled.evaluate(self._facts)


class CelEngine:
    """`PolicyEngine` over cel-expr-python. Thread-safe; compiled expressions are cached."""

    def __init__(self) -> None:
        cel = _require_cel()
        self._cel = cel
        self._env = cel.NewEnv(
            variables={FACTS_VARIABLE: cel.Type.Map(cel.Type.STRING, cel.Type.DYN)}
        )
        self._bool_type = cel.Type.BOOL
        self._error_type = cel.Type.ERROR
        self._accepted_results = (cel.Type.BOOL, cel.Type.DYN)
        self._cache: dict[str, CelExpression] = {}
        self._lock = threading.Lock()

    def compile(self, expression: str) -> CelExpression:
        """Compile (or fetch from the cache); PolicyError names the position of the first error."""
        cached = self._cache.get(expression)
        if cached is not None:
            return cached
        if not isinstance(expression, str) or not expression.strip():
            raise PolicyError("the expression is empty")
        try:
            compiled = self._env.compile(expression)
        except RuntimeError as exc:
            message = str(exc)
            position = parse_compile_error(message)
            if position is None:
                raise PolicyError(f"invalid expression: {message}") from exc
            raise PolicyError(f"invalid expression at {position}") from exc
        result_type = compiled.return_type()
        if not any(result_type == accepted for accepted in self._accepted_results):
            raise PolicyError(
                f"invalid expression at line 1, column 1: it yields {result_type.name()}, "
                "not a bool"
            )
        wrapped = CelExpression(self, compiled, expression)
        with self._lock:
            if len(self._cache) >= _CACHE_LIMIT:
                self._cache.clear()
            self._cache[expression] = wrapped
        return wrapped

    def bind(self, facts: Mapping[str, Any]) -> CelBoundFacts:
        """Prepare `facts` for many evaluations (one CEL activation)."""
        try:
            activation = self._env.Activation({FACTS_VARIABLE: dict(facts)})
        except (RuntimeError, TypeError, ValueError) as exc:
            raise PolicyError(f"facts cannot be given to the CEL engine: {exc}") from exc
        return CelBoundFacts(activation, facts)
