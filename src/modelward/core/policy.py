"""Policy verdicts: rules, policies, decisions and break-glass overrides, evaluated on facts.

`evaluate` runs every rule of a policy against one facts document with an expression engine that
the caller supplies (see `PolicyEngine`; the CEL adapter lives in `modelward.policy`). Rules fail
closed: an expression that raises, reads a missing or null fact, or returns anything but a bool
fails its rule with a detail naming the fact. Deny-severity failures deny; warn failures are
listed but allow. Nothing here parses YAML, reads the clock or stores anything; time is a fact.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from json.encoder import encode_basestring as _quote  # C-accelerated
from typing import Any, Protocol, runtime_checkable

from modelward.core.canonical import canonical_digest
from modelward.errors import InputError, PolicyError

SEVERITY_DENY = "deny"
SEVERITY_WARN = "warn"
SEVERITIES = (SEVERITY_DENY, SEVERITY_WARN)

RULE_ID_PATTERN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,99}$")
MAX_EXPRESSION_LENGTH = 4096
MAX_JUSTIFICATION_LENGTH = 4096


# --------------------------------------------------------------------------- engine protocol


class CompiledExpression(Protocol):
    """One compiled expression; evaluating it on a facts document returns a plain value."""

    def evaluate(self, facts: Mapping[str, Any]) -> object: ...


class PolicyEngine(Protocol):
    """Compiles expression text; raises PolicyError naming the position for invalid text."""

    def compile(self, expression: str) -> CompiledExpression: ...


class BoundFacts(Protocol):
    """Facts prepared once by an engine so that many expressions can read them cheaply."""

    def evaluate(self, compiled: CompiledExpression) -> object: ...


@runtime_checkable
class BindingEngine(Protocol):
    """Optional engine extension: bind the facts once per decision instead of once per rule."""

    def compile(self, expression: str) -> CompiledExpression: ...

    def bind(self, facts: Mapping[str, Any]) -> BoundFacts: ...


# --------------------------------------------------------------------------- time


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC with a `Z` suffix; naive datetimes are refused."""
    if moment.tzinfo is None:
        raise InputError("a time must carry a time zone")
    text = moment.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


def parse_timestamp(text: str, what: str = "time") -> datetime:
    """Parse an RFC 3339 time with a zone; raise InputError naming `what` otherwise."""
    if not isinstance(text, str):
        raise InputError(f"{what} is not a string")
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise InputError(f"{what} is not an RFC 3339 time: {text!r}") from exc
    if moment.tzinfo is None:
        raise InputError(f"{what} has no time zone: {text!r}")
    return moment.astimezone(UTC)


# --------------------------------------------------------------------------- rules and policies


@dataclass(frozen=True)
class Rule:
    id: str
    expression: str
    message: str
    severity: str = SEVERITY_DENY
    when: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not RULE_ID_PATTERN.match(self.id):
            raise PolicyError(
                f"rule id {self.id!r} must be 1-100 lowercase letters, digits, '.', '_' or '-'"
            )
        for what, text in (("expression", self.expression), ("message", self.message)):
            if not isinstance(text, str) or not text.strip():
                raise PolicyError(f"rule {self.id!r}: {what} must be a non-empty string")
        if len(self.expression) > MAX_EXPRESSION_LENGTH:
            raise PolicyError(
                f"rule {self.id!r}: expression is longer than {MAX_EXPRESSION_LENGTH} characters"
            )
        if self.severity not in SEVERITIES:
            raise PolicyError(
                f"rule {self.id!r}: severity {self.severity!r} is not one of deny, warn"
            )
        if self.when is not None and (not isinstance(self.when, str) or not self.when.strip()):
            raise PolicyError(f"rule {self.id!r}: 'when' must be a non-empty string when given")

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "expression": self.expression,
            "message": self.message,
            "severity": self.severity,
            "when": self.when,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Rule:
        return cls(
            id=data["id"],
            expression=data["expression"],
            message=data["message"],
            severity=data.get("severity", SEVERITY_DENY),
            when=data.get("when"),
        )


def rules_digest(rules: Iterable[Rule]) -> str:
    """`sha256:` digest of the canonical JSON of the rules, in order."""
    return "sha256:" + canonical_digest([rule.to_dict() for rule in rules])


@dataclass(frozen=True)
class Policy:
    name: str
    rules: tuple[Rule, ...]
    digest: str

    @classmethod
    def create(cls, name: str, rules: Sequence[Rule]) -> Policy:
        """Build a policy, refusing an empty rule list and duplicate rule ids."""
        if not rules:
            raise PolicyError(f"policy {name!r} has no rules")
        seen: set[str] = set()
        for rule in rules:
            if rule.id in seen:
                raise PolicyError(f"policy {name!r}: rule id {rule.id!r} appears more than once")
            seen.add(rule.id)
        return cls(name=name, rules=tuple(rules), digest=rules_digest(rules))

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "digest": self.digest,
            "rules": [rule.to_dict() for rule in self.rules],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        policy = cls.create(data["name"], [Rule.from_dict(r) for r in data["rules"]])
        if "digest" in data and data["digest"] != policy.digest:
            raise PolicyError(
                f"policy {policy.name!r}: recorded digest {data['digest']} does not match "
                f"its rules ({policy.digest})"
            )
        return policy


# --------------------------------------------------------------------------- results


@dataclass(frozen=True)
class RuleResult:
    rule_id: str
    passed: bool
    severity: str
    message: str
    detail: str = ""
    skipped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "passed": self.passed,
            "severity": self.severity,
            "message": self.message,
            "detail": self.detail,
            "skipped": self.skipped,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RuleResult:
        return cls(
            rule_id=data["rule_id"],
            passed=bool(data["passed"]),
            severity=data["severity"],
            message=data["message"],
            detail=data.get("detail", ""),
            skipped=bool(data.get("skipped", False)),
        )


@dataclass(frozen=True)
class Override:
    """A break-glass decision: who, why, until when. Validity is checked by `create`."""

    actor: str
    justification: str
    created_at: datetime
    expires_at: datetime

    @classmethod
    def create(
        cls,
        actor: str,
        justification: str,
        expires_at: datetime,
        now: datetime,
        max_duration: timedelta | None = None,
    ) -> Override:
        if not isinstance(actor, str) or not actor.strip():
            raise InputError("an override needs the acting user")
        if not isinstance(justification, str) or not justification.strip():
            raise InputError("an override needs a justification")
        if len(justification) > MAX_JUSTIFICATION_LENGTH:
            raise InputError(
                f"the override justification is longer than {MAX_JUSTIFICATION_LENGTH} characters"
            )
        if expires_at.tzinfo is None or now.tzinfo is None:
            raise InputError("override times must carry a time zone")
        if expires_at <= now:
            raise InputError(
                f"the override expiry {format_timestamp(expires_at)} is not in the future "
                f"(now is {format_timestamp(now)})"
            )
        if max_duration is not None and expires_at - now > max_duration:
            raise InputError(
                f"the override expiry is more than {max_duration} away; choose an earlier one"
            )
        return cls(
            actor=actor,
            justification=justification.strip(),
            created_at=now.astimezone(UTC),
            expires_at=expires_at.astimezone(UTC),
        )

    def is_active(self, now: datetime) -> bool:
        return self.created_at <= now < self.expires_at

    def to_dict(self) -> dict[str, Any]:
        return {
            "actor": self.actor,
            "justification": self.justification,
            "created_at": format_timestamp(self.created_at),
            "expires_at": format_timestamp(self.expires_at),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Override:
        return cls(
            actor=data["actor"],
            justification=data["justification"],
            created_at=parse_timestamp(data["created_at"], "override created_at"),
            expires_at=parse_timestamp(data["expires_at"], "override expires_at"),
        )


@dataclass(frozen=True)
class Decision:
    """The gate's answer. `failed` names deny failures, `warnings` warn failures."""

    allowed: bool
    environment: str
    policy_digest: str
    facts_digest: str
    results: tuple[RuleResult, ...]
    failed: tuple[str, ...]
    warnings: tuple[str, ...] = ()
    policy_name: str = ""
    override: Override | None = field(default=None)

    @property
    def overridden(self) -> bool:
        return self.override is not None

    def failed_results(self) -> tuple[RuleResult, ...]:
        """Every failed rule, deny and warn, in policy order."""
        return tuple(r for r in self.results if not r.passed)

    def to_dict(self) -> dict[str, Any]:
        return {
            "allowed": self.allowed,
            "environment": self.environment,
            "policy_name": self.policy_name,
            "policy_digest": self.policy_digest,
            "facts_digest": self.facts_digest,
            "results": [r.to_dict() for r in self.results],
            "failed": list(self.failed),
            "warnings": list(self.warnings),
            "override": self.override.to_dict() if self.override else None,
        }

    def digest(self) -> str:
        return "sha256:" + canonical_digest(self.to_dict())

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Decision:
        raw_override = data.get("override")
        return cls(
            allowed=bool(data["allowed"]),
            environment=data["environment"],
            policy_digest=data["policy_digest"],
            facts_digest=data["facts_digest"],
            results=tuple(RuleResult.from_dict(r) for r in data["results"]),
            failed=tuple(data["failed"]),
            warnings=tuple(data.get("warnings", ())),
            policy_name=data.get("policy_name", ""),
            override=Override.from_dict(raw_override) if raw_override else None,
        )


def apply_override(decision: Decision, override: Override, now: datetime) -> Decision:
    """Turn a denial into a visible, overridden allow. The failed rules stay recorded."""
    if decision.allowed:
        raise InputError("the decision already allows the promotion; nothing to override")
    if not override.is_active(now):
        raise InputError(
            f"the override expired at {format_timestamp(override.expires_at)}; "
            "create a new one with a future expiry"
        )
    return replace(decision, allowed=True, override=override)


# --------------------------------------------------------------------------- evaluation


def facts_digest(facts: Mapping[str, Any]) -> str:
    """`sha256:` digest of the canonical JSON (RFC 8785) of a facts document.

    Facts are hashed on every decision, so this takes a fast path that yields the same bytes as
    `canonical_json` for ASCII JSON values and falls back to it for anything else.
    """
    try:
        text = _fast_canonical(facts)
    except (_NotFastError, TypeError):
        text = ""
    if not text or not text.isascii():
        return "sha256:" + canonical_digest(dict(facts))
    return "sha256:" + hashlib.sha256(text.encode("ascii")).hexdigest()


class _NotFastError(Exception):
    pass


_SAFE_INT = 2**53 - 1


def _fast_canonical(value: Any) -> str:
    # RFC 8785 for plain values. Objects are sorted by code point, which equals the UTF-16 order
    # RFC 8785 asks for as long as the text is ASCII (the caller checks). Anything unusual raises.
    kind = type(value)
    if kind is str:
        return _quote(value)
    if kind is dict:
        return (
            "{"
            + ",".join([_quote(k) + ":" + _fast_canonical(v) for k, v in sorted(value.items())])
            + "}"
        )
    if kind is list or kind is tuple:
        return "[" + ",".join([_fast_canonical(item) for item in value]) + "]"
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if kind is int:
        if -_SAFE_INT <= value <= _SAFE_INT:
            return str(value)
        raise _NotFastError
    if kind is float:
        # Python's repr and ECMAScript's Number::toString agree on the shortest digits and, in this
        # range, on fixed notation, except that JCS drops a trailing ".0".
        if value == 0:
            return "0"
        if 1e-4 <= abs(value) < 1e16:
            text = repr(value)
            return text[:-2] if text.endswith(".0") else text
    raise _NotFastError


def evaluate(
    policy: Policy, facts: Mapping[str, Any], engine: PolicyEngine, environment: str = ""
) -> Decision:
    """Evaluate every rule of `policy` on `facts`; deterministic for equal inputs.

    `environment` defaults to the policy's name. Compilation is the engine's job (and its cache's);
    an expression that does not compile fails its rule instead of raising.
    """
    if not isinstance(facts, Mapping):
        raise InputError("facts must be a JSON object")
    digest = facts_digest(facts)
    # A BindingEngine prepares the facts once; checked by attribute, as isinstance on a runtime
    # protocol costs more than a whole rule.
    bind = getattr(engine, "bind", None)
    bound: BoundFacts | None = bind(facts) if callable(bind) else None
    results = tuple(_evaluate_rule(rule, facts, engine, bound) for rule in policy.rules)
    failed = tuple(r.rule_id for r in results if not r.passed and r.severity == SEVERITY_DENY)
    warnings = tuple(r.rule_id for r in results if not r.passed and r.severity == SEVERITY_WARN)
    return Decision(
        allowed=not failed,
        environment=environment or policy.name,
        policy_digest=policy.digest,
        facts_digest=digest,
        results=results,
        failed=failed,
        warnings=warnings,
        policy_name=policy.name,
    )


class _RuleFailure(Exception):
    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


def _evaluate_rule(
    rule: Rule, facts: Mapping[str, Any], engine: PolicyEngine, bound: BoundFacts | None
) -> RuleResult:
    try:
        if rule.when is not None:
            applies = _run(rule.when, "when", facts, engine, bound)
            if not applies:
                return RuleResult(
                    rule.id, True, rule.severity, rule.message, "not applicable", skipped=True
                )
        passed = _run(rule.expression, "expression", facts, engine, bound)
    except _RuleFailure as failure:
        return RuleResult(rule.id, False, rule.severity, rule.message, failure.detail)
    detail = "" if passed else _false_detail(rule.expression, facts)
    return RuleResult(rule.id, passed, rule.severity, rule.message, detail)


_MAX_SHOWN = 400


def _false_detail(expression: str, facts: Mapping[str, Any]) -> str:
    """'expression is false', plus the plain values (scalars, short lists of scalars) the
    expression read, so a deny says which fact made it fail (e.g. which fields are missing)."""
    shown = []
    for path, value in _present_paths(expression, facts):
        if isinstance(value, Mapping):
            continue
        if isinstance(value, (list, tuple)):
            if len(value) > 20 or any(isinstance(v, (Mapping, list, tuple)) for v in value):
                continue
            text = "[" + ", ".join(_plain(v) for v in value) + "]"
        else:
            text = _plain(value)
        shown.append(f"{'.'.join(path)} = {text}")
    suffix = "; facts read: " + ", ".join(shown) if shown else ""
    if len(suffix) > _MAX_SHOWN:
        suffix = suffix[: _MAX_SHOWN - 1] + "…"
    return "expression is false" + suffix


def _plain(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return str(_quote(value))
    return repr(value)


def _run(
    expression: str,
    part: str,
    facts: Mapping[str, Any],
    engine: PolicyEngine,
    bound: BoundFacts | None,
) -> bool:
    try:
        compiled = engine.compile(expression)
        value = bound.evaluate(compiled) if bound is not None else compiled.evaluate(facts)
    except Exception as exc:  # fail closed on anything the engine raises
        raise _RuleFailure(_explain_error(expression, part, facts, exc)) from exc
    if not isinstance(value, bool):
        problem = missing_fact(expression, facts)
        if problem:
            where = "" if part == "expression" else f" in '{part}'"
            raise _RuleFailure(f"failed closed{where}: {problem}")
        raise _RuleFailure(
            f"failed closed: {part} returned {_type_name(value)} {value!r}, not a bool"
        )
    return value


def _explain_error(expression: str, part: str, facts: Mapping[str, Any], exc: Exception) -> str:
    where = "" if part == "expression" else f" in '{part}'"
    problem = missing_fact(expression, facts)
    if problem:
        return f"failed closed{where}: {problem}"
    present = _present_paths(expression, facts)
    used = ", ".join(f"{'.'.join(path)} ({_type_name(value)})" for path, value in present)
    suffix = f"; facts read: {used}" if used else ""
    return f"failed closed: {part} could not be evaluated: {exc}{suffix}"


# A fact path as written in an expression: facts.a.b or facts['a'].b; a name followed by "(" is a
# method or macro (all, exists, filter, size...) and ends the path.
_SEGMENT = r"(?:\s*\.\s*[A-Za-z_][A-Za-z0-9_]*\b(?!\s*\()|\s*\[\s*(?:'[^']*'|\"[^\"]*\")\s*\])"
_PATH = re.compile(r"(?<![\w.])facts((?:" + _SEGMENT + r")+)")
_PART = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|'[^']*'|\"[^\"]*\"")


def fact_paths(expression: str) -> list[tuple[str, ...]]:
    """The literal fact paths an expression reads, in order of appearance, without repeats."""
    paths: list[tuple[str, ...]] = []
    for match in _PATH.finditer(expression):
        path = tuple(part.strip("'\"") for part in _PART.findall(match.group(1)))
        if path and path not in paths:
            paths.append(path)
    return paths


def missing_fact(expression: str, facts: Mapping[str, Any]) -> str | None:
    """Describe the first fact the expression reads that is absent or null, if any."""
    for path in fact_paths(expression):
        node: Any = facts
        for depth, key in enumerate(path):
            here = ".".join(path[: depth + 1])
            if not isinstance(node, Mapping):
                parent = ".".join(path[:depth])
                return f"fact '{parent}' is {_type_name(node)}, not an object (reading '{here}')"
            if key not in node:
                return f"missing fact '{here}'"
            node = node[key]
            if node is None and depth < len(path) - 1:
                return f"fact '{here}' is null (reading '{'.'.join(path)}')"
    return None


def _present_paths(expression: str, facts: Mapping[str, Any]) -> list[tuple[tuple[str, ...], Any]]:
    found = []
    for path in fact_paths(expression):
        node: Any = facts
        for key in path:
            node = node[key] if isinstance(node, Mapping) and key in node else None
        found.append((path, node))
    return found


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "double"
    if isinstance(value, str):
        return "string"
    if isinstance(value, Mapping):
        return "object"
    if isinstance(value, (list, tuple)):
        return "list"
    return type(value).__name__
