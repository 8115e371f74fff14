"""The catalogue of scan rules: stable ids, the verdict each one implies, and a short title.

A rule id never changes meaning once published; reports, SARIF and signed scan attestations
refer to findings by it. This module holds data only; scanners decide when a rule fires.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Severity = Literal["critical", "high", "medium", "low", "info"]
Impact = Literal["unsafe", "malformed", "info"]


@dataclass(frozen=True)
class Rule:
    rule_id: str
    impact: Impact
    severity: Severity
    title: str


_RULES: tuple[Rule, ...] = (
    # format and bundle level
    Rule("MW-FMT-UNKNOWN", "malformed", "medium", "File format not recognised"),
    Rule("MW-FMT-EMPTY", "malformed", "low", "Empty file"),
    Rule("MW-FMT-UNREADABLE", "malformed", "medium", "File cannot be read"),
    Rule("MW-FMT-LIMIT", "malformed", "medium", "Scan limit reached; the rest was not checked"),
    Rule("MW-FMT-LINK", "unsafe", "high", "Symbolic link or special file in the bundle"),
    Rule("MW-CODE-NATIVE", "unsafe", "high", "Compiled code (executable or shared library)"),
    Rule("MW-PT2-WEIGHTS", "malformed", "medium", "torch.export archive weights do not fit"),
    # pickle
    Rule("MW-PKL-GLOBAL", "unsafe", "critical", "Pickle imports a global not on the allow-list"),
    Rule("MW-PKL-GLOBAL-UNRESOLVED", "unsafe", "critical", "Pickle import cannot be resolved"),
    Rule("MW-PKL-EXT", "unsafe", "high", "Pickle uses the copyreg extension registry"),
    Rule("MW-PKL-CALL", "unsafe", "high", "Pickle calls something that is not an allowed global"),
    Rule("MW-PKL-BUILD-GLOBAL", "unsafe", "high", "Pickle sets attributes on an imported object"),
    Rule("MW-PKL-PERSID", "malformed", "medium", "Pickle needs a persistent-id loader"),
    Rule("MW-PKL-OPCODE", "malformed", "high", "Pickle opcode unknown or used wrongly"),
    Rule("MW-PKL-TRUNCATED", "malformed", "high", "Pickle ends before STOP"),
    Rule("MW-PKL-STACK", "malformed", "high", "Pickle stack or memo misuse"),
    Rule("MW-PKL-TRAILING", "malformed", "medium", "Data after the last pickle"),
    # torch
    Rule("MW-TORCH-NO-PICKLE", "malformed", "high", "PyTorch archive without data.pkl"),
    Rule("MW-TORCH-STORAGE", "malformed", "medium", "PyTorch storage reference is invalid"),
    Rule("MW-TORCH-LEGACY", "malformed", "high", "Legacy PyTorch file is not well formed"),
    # zip and tar
    Rule("MW-ZIP-STRUCTURE", "malformed", "high", "Zip structure is broken"),
    Rule("MW-ZIP-HEADER-MISMATCH", "unsafe", "high", "Zip local and central headers disagree"),
    Rule("MW-ZIP-HIDDEN", "unsafe", "high", "Zip holds data its directory does not list"),
    Rule("MW-TAR-STRUCTURE", "malformed", "high", "Tar archive or compressed stream is broken"),
    Rule("MW-ARC-PATH", "unsafe", "high", "Archive member path escapes the extraction folder"),
    Rule("MW-ARC-LINK", "unsafe", "high", "Archive member is a link or special file"),
    Rule("MW-ARC-BOMB", "malformed", "high", "Archive expands beyond the size or ratio limits"),
    Rule("MW-ARC-DUPLICATE", "unsafe", "medium", "Archive holds two members with one name"),
    Rule("MW-ARC-ENCRYPTED", "malformed", "medium", "Archive member is encrypted"),
    # numpy
    Rule("MW-NPY-HEADER", "malformed", "high", "NumPy header is not well formed"),
    Rule("MW-NPY-SIZE", "malformed", "high", "NumPy data size disagrees with its header"),
    # safetensors
    Rule("MW-ST-HEADER", "malformed", "high", "safetensors header is not well formed"),
    Rule("MW-ST-DTYPE", "malformed", "high", "safetensors tensor has an unknown dtype"),
    Rule("MW-ST-SHAPE", "malformed", "high", "safetensors tensor shape and size disagree"),
    Rule("MW-ST-OFFSETS", "malformed", "high", "safetensors offsets out of range or overlapping"),
    Rule("MW-ST-COVERAGE", "malformed", "high", "safetensors data not covered exactly"),
    Rule("MW-ST-DUPLICATE", "malformed", "high", "safetensors header has duplicate keys"),
    # gguf
    Rule("MW-GGUF-STRUCTURE", "malformed", "high", "GGUF structure is not well formed"),
    Rule("MW-GGUF-TEMPLATE", "unsafe", "critical", "GGUF chat template can reach unsafe code"),
    Rule("MW-GGUF-TEMPLATE-SYNTAX", "malformed", "medium", "GGUF chat template does not parse"),
    # onnx
    Rule("MW-ONNX-STRUCTURE", "malformed", "high", "ONNX protobuf is not well formed"),
    Rule("MW-ONNX-EXTERNAL", "unsafe", "high", "ONNX external data points outside the bundle"),
    Rule(
        "MW-ONNX-CUSTOM-OP",
        "info",
        "low",
        "ONNX graph uses an operator outside the standard domains",
    ),
    # keras
    Rule("MW-KERAS-LAMBDA", "unsafe", "critical", "Keras model contains a Lambda layer"),
    Rule("MW-KERAS-CUSTOM", "unsafe", "high", "Keras model needs custom or unknown objects"),
    Rule("MW-KERAS-CONFIG", "malformed", "high", "Keras model config is not well formed"),
    # templates and configs in a bundle
    Rule("MW-TPL-UNSAFE", "unsafe", "critical", "Jinja template can reach unsafe code"),
    Rule("MW-JSON-INVALID", "malformed", "low", "JSON file is not valid"),
    # numeric sweep
    Rule("MW-NUM-NAN", "malformed", "high", "Tensor contains NaN"),
    Rule("MW-NUM-INF", "malformed", "high", "Tensor contains Inf"),
    Rule("MW-NUM-ZERO", "info", "low", "Tensor is all zeros"),
    Rule("MW-NUM-CONSTANT", "info", "low", "Tensor is constant"),
)

RULES: dict[str, Rule] = {rule.rule_id: rule for rule in _RULES}


def rule(rule_id: str) -> Rule:
    return RULES[rule_id]
