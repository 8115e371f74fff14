"""Read policy YAML into a `Policy`, compiling every rule so bad policies are refused at set time.

A policy file is either a list of rules or a mapping `{rules: [...]}` (optionally with `name` and
`description`). Each rule has `id`, `expression`, `message`, optional `severity` (`deny` by default,
or `warn`) and optional `when`. Unknown keys, duplicate ids, duplicate YAML keys, empty
expressions and expressions that do not compile are refused with a PolicyError naming the rule
(and, for expressions, the line and column). Files are bounded in size and read with
`yaml.safe_load` semantics. The default policies shipped with modelward are loaded from package
data. This module does not store policies or decide anything.
"""

from __future__ import annotations

import importlib.resources
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

import yaml

from modelward.core.policy import Policy, PolicyEngine, Rule
from modelward.errors import InputError, PathError, PolicyError

MAX_POLICY_BYTES = 1024 * 1024
RULE_KEYS = frozenset({"id", "expression", "message", "severity", "when"})
REQUIRED_RULE_KEYS = ("id", "expression", "message")
DOCUMENT_KEYS = frozenset({"name", "description", "rules"})
DEFAULT_ENVIRONMENTS = ("staging", "canary", "production")
_POLICY_PACKAGE = "modelward.policy"


class _StrictSafeLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (YAML would keep the last)."""


def _construct_mapping(loader: _StrictSafeLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    mapping: dict[Any, Any] = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if not isinstance(key, Hashable):
            raise PolicyError(f"line {key_node.start_mark.line + 1}: a mapping key is not a scalar")
        if key in mapping:
            raise PolicyError(f"line {key_node.start_mark.line + 1}: key {key!r} appears twice")
        mapping[key] = loader.construct_object(value_node, deep=True)
    return mapping


_StrictSafeLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


def parse_policy(text: str | bytes, name: str, engine: PolicyEngine) -> Policy:
    """Parse and compile a policy document; PolicyError says what is wrong and where."""
    if len(text) > MAX_POLICY_BYTES:
        raise PolicyError(f"policy {name!r} is larger than {MAX_POLICY_BYTES} bytes")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PolicyError(f"policy {name!r} is not UTF-8 text") from exc
    try:
        document = yaml.load(text, Loader=_StrictSafeLoader)  # a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise PolicyError(f"policy {name!r} is not valid YAML: {exc}") from exc
    raw_rules, name = _rules_of(document, name)
    rules = [_rule_from(raw, index, name) for index, raw in enumerate(raw_rules, start=1)]
    policy = Policy.create(name, rules)
    compile_policy(policy, engine)
    return policy


def compile_policy(policy: Policy, engine: PolicyEngine) -> None:
    """Compile every expression and `when` of `policy`; PolicyError names the failing rule."""
    for rule in policy.rules:
        for part, expression in (("expression", rule.expression), ("when", rule.when)):
            if expression is None:
                continue
            try:
                engine.compile(expression)
            except PolicyError as exc:
                raise PolicyError(
                    f"policy {policy.name!r}, rule {rule.id!r}: {part}: {exc}"
                ) from exc


def load_policy_file(path: Path, engine: PolicyEngine, name: str | None = None) -> Policy:
    """Read a policy file (bounded in size); the name defaults to the file's stem."""
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_POLICY_BYTES + 1)
    except OSError as exc:
        raise PathError(f"cannot read policy file {path}: {exc.strerror or exc}") from exc
    return parse_policy(data, name or path.stem, engine)


def default_policy_text(environment: str) -> bytes:
    """The bytes of the default policy shipped for `environment`."""
    if environment not in DEFAULT_ENVIRONMENTS:
        raise InputError(
            f"no default policy for environment {environment!r}; "
            f"defaults exist for {', '.join(DEFAULT_ENVIRONMENTS)}"
        )
    # `defaults/` is a data directory, not a package: reach it from the package that holds it.
    resource = importlib.resources.files(_POLICY_PACKAGE) / "defaults" / f"{environment}.yaml"
    return resource.read_bytes()


def load_default_policy(environment: str, engine: PolicyEngine) -> Policy:
    """The default policy shipped with modelward for one of the default environments."""
    return parse_policy(default_policy_text(environment), environment, engine)


def _rules_of(document: Any, name: str) -> tuple[list[Any], str]:
    if isinstance(document, list):
        return document, name
    if isinstance(document, Mapping):
        unknown = sorted(str(key) for key in document if key not in DOCUMENT_KEYS)
        if unknown:
            raise PolicyError(
                f"policy {name!r}: unknown top-level key(s) {', '.join(unknown)}; "
                "expected rules (and optionally name, description)"
            )
        rules = document.get("rules")
        if isinstance(rules, list):
            # The caller's name (the environment) wins; a declared name only documents the file.
            declared = document.get("name", name)
            if not isinstance(declared, str) or not declared.strip():
                raise PolicyError(f"policy {name!r}: 'name' must be a non-empty string")
            return rules, name
        raise PolicyError(f"policy {name!r}: 'rules' must be a list of rules")
    kind = "empty" if document is None else type(document).__name__
    raise PolicyError(
        f"policy {name!r} must be a list of rules or a mapping with 'rules' (got {kind})"
    )


def _rule_from(raw: Any, index: int, policy_name: str) -> Rule:
    where = f"policy {policy_name!r}, rule #{index}"
    if not isinstance(raw, Mapping):
        raise PolicyError(f"{where} is not a mapping with id, expression and message")
    rule_id = raw.get("id")
    if isinstance(rule_id, str):
        where = f"policy {policy_name!r}, rule {rule_id!r}"
    unknown = sorted(str(key) for key in raw if key not in RULE_KEYS)
    if unknown:
        raise PolicyError(
            f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(RULE_KEYS))}"
        )
    for key in REQUIRED_RULE_KEYS:
        if key not in raw:
            raise PolicyError(f"{where}: missing '{key}'")
    for key in RULE_KEYS:
        value = raw.get(key)
        if key in raw and not isinstance(value, str) and not (key == "when" and value is None):
            raise PolicyError(f"{where}: '{key}' must be a string")
    try:
        return Rule(
            id=raw["id"],
            expression=raw["expression"],
            message=raw["message"],
            severity=raw.get("severity", "deny"),
            when=raw.get("when"),
        )
    except PolicyError as exc:
        raise PolicyError(f"policy {policy_name!r}: {exc}") from exc
