"""Change classes: file roles, and contradictions between the declaration and the file diff."""

from __future__ import annotations

import pytest

from modelward.core.change_class import FileRole, classify_change, file_role
from modelward.errors import InputError

BASE = {
    "model.safetensors": "sha256:1",
    "config.json": "sha256:2",
    "generation_config.json": "sha256:3",
    "tokenizer.json": "sha256:4",
    "chat_template.jinja": "sha256:5",
    "policies/guardrails.yaml": "sha256:6",
    "quantize_config.json": "sha256:7",
    "README.md": "sha256:8",
}


@pytest.mark.parametrize(
    ("name", "role"),
    [
        ("model-00001-of-00004.safetensors", FileRole.WEIGHTS),
        ("pytorch_model.bin", FileRole.WEIGHTS),
        ("model.gguf", FileRole.WEIGHTS),
        ("onnx/model.onnx", FileRole.WEIGHTS),
        ("tf_model.h5", FileRole.WEIGHTS),
        ("tokenizer.json", FileRole.TOKENIZER),
        ("tokenizer_config.json", FileRole.TOKENIZER),
        ("vocab.txt", FileRole.TOKENIZER),
        ("merges.txt", FileRole.TOKENIZER),
        ("spiece.model", FileRole.TOKENIZER),
        ("chat_template.jinja", FileRole.PROMPT),
        ("prompts/system.txt", FileRole.PROMPT),
        ("system_prompt.md", FileRole.PROMPT),
        ("config.json", FileRole.CONFIG),
        ("generation_config.json", FileRole.CONFIG),
        ("quantize_config.json", FileRole.QUANTIZATION),
        ("policies/guardrails.yaml", FileRole.SAFETY_POLICY),
        ("adapter_model.safetensors", FileRole.ADAPTER),
        ("README.md", FileRole.DOCUMENTATION),
        ("train.py", FileRole.OTHER),
    ],
)
def test_file_roles(name: str, role: FileRole) -> None:
    assert file_role(name) is role


@pytest.mark.parametrize(
    ("changes", "declared", "compat"),
    [
        ({"model.safetensors": "x"}, "weights", "eval-only"),
        ({"model.safetensors": "x"}, "data", "eval-only"),
        ({"chat_template.jinja": "x", "README.md": "x"}, "prompt", "eval-only"),
        ({"policies/guardrails.yaml": "x"}, "safety-policy", "eval-only"),
        ({"model.safetensors": "x", "quantize_config.json": "x"}, "quantization", "eval-only"),
        ({"tokenizer.json": "x"}, "tokenizer", "breaking"),
        ({"generation_config.json": "x"}, "config", "compatible"),
        ({"model.safetensors": "x", "config.json": "x"}, "architecture", "breaking"),
    ],
)
def test_honest_declarations_are_consistent(
    changes: dict[str, str], declared: str, compat: str
) -> None:
    report = classify_change(BASE, {**BASE, **changes}, declared, compat)
    assert report.consistent, report.to_fact()["contradictions"]
    assert report.to_fact()["consistent"] is True


def test_prompt_declared_while_weights_changed_is_flagged() -> None:
    report = classify_change(BASE, {**BASE, "model.safetensors": "x"}, "prompt", "eval-only")
    codes = [c.code for c in report.contradictions]
    assert codes == ["unexpected-weights", "expected-change-missing"]
    assert report.contradictions[0].files == ("model.safetensors",)
    assert "declared a prompt change but weights files changed" in report.contradictions[0].message
    fact = report.to_fact()
    assert fact["consistent"] is False
    assert fact["roles_changed"] == ["weights"]


@pytest.mark.parametrize(
    ("changes", "declared", "compat", "code"),
    [
        ({"tokenizer.json": "x"}, "tokenizer", "eval-only", "compat-too-low"),
        ({"model.safetensors": "x"}, "weights", "compatible", "compat-too-low"),
        (
            {"tokenizer.json": "x", "config.json": "x"},
            "config",
            "compatible",
            "unexpected-tokenizer",
        ),
        ({"tokenizer.json": "x"}, "architecture", "eval-only", "compat-too-low"),
        ({"train.py": "x"}, "weights", "eval-only", "unexpected-other"),
        ({}, "weights", "eval-only", "no-change"),
    ],
)
def test_contradictions(changes: dict[str, str], declared: str, compat: str, code: str) -> None:
    report = classify_change(BASE, {**BASE, **changes}, declared, compat)
    assert code in [c.code for c in report.contradictions]


def test_compatible_with_removed_files_is_flagged() -> None:
    current = {k: v for k, v in BASE.items() if k != "generation_config.json"}
    report = classify_change(BASE, current, "config", "compatible")
    assert [c.code for c in report.contradictions] == ["files-removed"]
    assert report.removed == ("generation_config.json",)


def test_tokenizer_files_under_config_need_breaking() -> None:
    report = classify_change(BASE, {**BASE, "tokenizer.json": "x"}, "config", "compatible")
    codes = {c.code for c in report.contradictions}
    assert {"unexpected-tokenizer", "compat-too-low-for-files", "expected-change-missing"} <= codes


def test_first_version_and_missing_declarations() -> None:
    first = classify_change(None, BASE, "weights", "breaking")
    assert first.first_version and first.consistent
    assert len(first.added) == len(BASE)
    undeclared = classify_change(BASE, BASE, None, None)
    assert [c.code for c in undeclared.contradictions] == ["class-missing", "compat-missing"]


def test_bad_input() -> None:
    with pytest.raises(InputError, match="unknown change class 'model'"):
        classify_change(BASE, BASE, "model", "compatible")
    with pytest.raises(InputError, match="unknown compatibility"):
        classify_change(BASE, BASE, "weights", "minor")
    with pytest.raises(InputError, match="name and a digest"):
        classify_change(BASE, {"a": ""}, "weights", "eval-only")
