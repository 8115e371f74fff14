"""Policy YAML: accepted shapes, every rejection with a clear message, defaults as package data."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelward.errors import InputError, PathError, PolicyError
from modelward.policy.cel_engine import CelEngine, parse_compile_error
from modelward.policy.loader import (
    MAX_POLICY_BYTES,
    default_policy_text,
    load_default_policy,
    load_policy_file,
    parse_policy,
)

GOOD_RULE = """
- id: scan-clean
  expression: facts.scan.verdict == 'clean'
  message: must scan clean
"""


def test_list_and_mapping_forms_give_the_same_rules(engine: CelEngine) -> None:
    as_list = parse_policy(GOOD_RULE, "staging", engine)
    as_mapping = parse_policy(
        "name: mine\ndescription: d\nrules:\n" + GOOD_RULE.replace("\n", "\n  "), "staging", engine
    )
    assert as_list.digest == as_mapping.digest
    assert as_mapping.name == "staging"  # the environment's name wins over the declared one
    assert as_list.rules[0].severity == "deny"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "must be a list of rules or a mapping with 'rules' (got empty)"),
        ("just a string", "(got str)"),
        ("rules: {id: a}", "'rules' must be a list of rules"),
        ("policy: []", "unknown top-level key(s) policy"),
        ("[]", "has no rules"),
        ("- 42", "rule #1 is not a mapping"),
        ("- {id: a, expression: 'true'}", "rule 'a': missing 'message'"),
        ("- {id: a, expression: 'true', message: m, level: 3}", "unknown key(s) level"),
        ("- {id: a, expression: 'true', message: m, severity: fatal}", "severity 'fatal'"),
        ("- {id: a, expression: '', message: m}", "expression must be a non-empty string"),
        ("- {id: 7, expression: 'true', message: m}", "'id' must be a string"),
        ("- {id: a, expression: true, message: m}", "'expression' must be a string"),
        ("- {id: a, id: b, expression: 'true', message: m}", "key 'id' appears twice"),
        ("- [unclosed", "is not valid YAML"),
        (
            "- &a {id: a, expression: 'true', message: m}\n- *a",
            "rule id 'a' appears more than once",
        ),
    ],
)
def test_bad_documents_are_refused(engine: CelEngine, text: str, message: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "staging", engine)
    assert message in str(caught.value)


def test_duplicate_rule_id_is_refused(engine: CelEngine) -> None:
    with pytest.raises(PolicyError, match="rule id 'scan-clean' appears more than once"):
        parse_policy(GOOD_RULE + GOOD_RULE, "staging", engine)


def test_invalid_expression_is_refused_naming_rule_and_position(engine: CelEngine) -> None:
    text = GOOD_RULE + "- id: broken\n  expression: facts.a &&& facts.b\n  message: m\n"
    with pytest.raises(PolicyError) as caught:
        parse_policy(text, "production", engine)
    message = str(caught.value)
    assert "rule 'broken'" in message
    assert "expression: invalid expression at line 1, column 11" in message


def test_invalid_when_is_refused_naming_rule(engine: CelEngine) -> None:
    text = "- {id: a, expression: 'true', message: m, when: 'unknown_var == 1'}"
    with pytest.raises(PolicyError, match=r"rule 'a': when: invalid expression at line 1"):
        parse_policy(text, "production", engine)


def test_expression_of_the_wrong_type_is_refused(engine: CelEngine) -> None:
    with pytest.raises(PolicyError, match="yields INT, not a bool"):
        parse_policy("- {id: a, expression: '1 + 2', message: m}", "staging", engine)


def test_multiline_error_position() -> None:
    position = parse_compile_error("ERROR: <input>:2:4: Syntax error: mismatched input")
    assert position is not None
    assert (position.line, position.column) == (2, 4)
    assert str(position) == "line 2, column 4: Syntax error: mismatched input"


def test_oversized_policy_is_refused(engine: CelEngine, tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    path.write_bytes(GOOD_RULE.encode() + b"#" * MAX_POLICY_BYTES)
    with pytest.raises(PolicyError, match="larger than"):
        load_policy_file(path, engine)


def test_policy_file_name_defaults_to_stem(engine: CelEngine, tmp_path: Path) -> None:
    path = tmp_path / "canary.yaml"
    path.write_text(GOOD_RULE)
    assert load_policy_file(path, engine).name == "canary"
    assert load_policy_file(path, engine, name="production").name == "production"
    with pytest.raises(PathError, match="cannot read policy file"):
        load_policy_file(tmp_path / "missing.yaml", engine)


def test_non_utf8_is_refused(engine: CelEngine) -> None:
    with pytest.raises(PolicyError, match="not UTF-8"):
        parse_policy(b"\xff\xfe- id", "staging", engine)


def test_defaults_ship_as_package_data(engine: CelEngine) -> None:
    for environment in ("staging", "canary", "production"):
        text = default_policy_text(environment)
        policy = load_default_policy(environment, engine)
        assert policy.name == environment
        assert text.startswith(b"# modelward default policy")
    production = load_default_policy("production", engine)
    assert production.digest == load_default_policy("production", CelEngine()).digest
    with pytest.raises(InputError, match="no default policy for environment 'qa'"):
        default_policy_text("qa")
