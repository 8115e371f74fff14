"""SARIF 2.1.0 output for GitHub code scanning: one run, one rule per rule id, one result per
finding, each located at the file (relative to the scanned root) and named by its location.

Binary files have no lines, so results carry a `region` only as `byteOffset` when the finding
names an offset; the human-readable location is kept in the message and a property.
"""

from __future__ import annotations

import re
from typing import Any

from modelward.scanning.report import ScanReport
from modelward.scanning.rules import RULES

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_LEVELS = {"unsafe": "error", "malformed": "warning", "info": "note"}
_SECURITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0", "info": "1.0"}
_OFFSET = re.compile(r"^offset (\d+)$")


def to_sarif(report: ScanReport) -> dict[str, Any]:
    used = sorted({f.rule_id for f in report.findings})
    rules = []
    for rule_id in used:
        rule = RULES[rule_id]
        rules.append(
            {
                "id": rule_id,
                "name": "".join(part.capitalize() for part in rule_id.split("-")[1:]),
                "shortDescription": {"text": rule.title},
                "fullDescription": {"text": f"{rule.title} (verdict: {rule.impact})."},
                "defaultConfiguration": {"level": _LEVELS[rule.impact]},
                "properties": {
                    "security-severity": _SECURITY[rule.severity],
                    "tags": ["security", "model-scanning"],
                },
            }
        )
    index = {rule_id: i for i, rule_id in enumerate(used)}
    results = []
    for finding in report.findings:
        physical: dict[str, Any] = {"artifactLocation": {"uri": finding.file}}
        match = _OFFSET.match(finding.location)
        if match:
            physical["region"] = {"byteOffset": int(match.group(1)), "byteLength": 1}
        where = f" ({finding.location})" if finding.location else ""
        results.append(
            {
                "ruleId": finding.rule_id,
                "ruleIndex": index[finding.rule_id],
                "level": _LEVELS[finding.impact],
                "message": {"text": f"{finding.message}{where}"},
                "locations": [{"physicalLocation": physical}],
                "partialFingerprints": {
                    "modelward/v1": f"{finding.rule_id}:{finding.file}:{finding.location}"
                },
                "properties": {"severity": finding.severity, "location": finding.location},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "modelward",
                        "version": report.scanner_version,
                        "informationUri": "https://github.com/modelward/modelward",
                        "rules": rules,
                    }
                },
                "results": results,
                "properties": {"verdict": report.verdict},
            }
        ],
    }
