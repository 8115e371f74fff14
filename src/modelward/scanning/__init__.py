"""modelward.scanning: an allow-list scanner for model files that never executes what it reads.

`scan(path)` sniffs every file of a bundle by content, analyses pickles with a symbolic machine
that follows CPython's unpickler, validates containers the way their loaders parse them, and
returns a `ScanReport` whose verdict is `clean`, `malformed` or `unsafe`, with each file's sha256.
`scan_inputs` scans bytes already in hand (with their digest, when the caller computed it).
"""

from __future__ import annotations

from modelward.scanning.allowlist import AllowList, configured_allow, parse_global
from modelward.scanning.context import Limits
from modelward.scanning.engine import ScanInput, scan, scan_inputs, scan_paths
from modelward.scanning.report import FileResult, Finding, ScanReport, Verdict
from modelward.scanning.rules import RULES, Rule
from modelward.scanning.sarif import to_sarif

__all__ = [
    "RULES",
    "AllowList",
    "FileResult",
    "Finding",
    "Limits",
    "Rule",
    "ScanInput",
    "ScanReport",
    "Verdict",
    "configured_allow",
    "parse_global",
    "scan",
    "scan_inputs",
    "scan_paths",
    "to_sarif",
]
