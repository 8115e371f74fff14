"""Scan results: findings, per-file results and the bundle's report with its verdict.

The verdict is derived, never stored apart from its findings: any finding of an `unsafe` rule
makes the report `unsafe`; otherwise any `malformed` finding makes it `malformed`; otherwise it
is `clean`. `to_dict()` is stable (sorted, no timestamps, no absolute paths) because the lead
engineer signs it inside a scan attestation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from modelward.scanning.rules import RULES, Severity

Verdict = Literal["clean", "malformed", "unsafe"]
SCHEMA = "https://modelward.dev/scan-report/v1"
_VERDICT_ORDER = {"clean": 0, "malformed": 1, "unsafe": 2}


@dataclass(frozen=True)
class Finding:
    """One thing wrong with one file: which rule, where, and a sentence for a person."""

    rule_id: str
    file: str
    location: str
    message: str

    @property
    def severity(self) -> Severity:
        return RULES[self.rule_id].severity

    @property
    def impact(self) -> str:
        return RULES[self.rule_id].impact

    def to_dict(self) -> dict[str, str]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity,
            "impact": self.impact,
            "file": self.file,
            "location": self.location,
            "message": self.message,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Finding:
        return cls(
            rule_id=str(data["rule_id"]),
            file=str(data["file"]),
            location=str(data["location"]),
            message=str(data["message"]),
        )

    def sort_key(self) -> tuple[str, int, str, str, str]:
        return (
            self.file,
            -_VERDICT_ORDER.get(self.impact, 0),
            self.rule_id,
            self.location,
            self.message,
        )


def verdict_of(findings: Iterable[Finding]) -> Verdict:
    worst: Verdict = "clean"
    for finding in findings:
        if finding.impact == "unsafe":
            return "unsafe"
        if finding.impact == "malformed":
            worst = "malformed"
    return worst


@dataclass(frozen=True)
class FileResult:
    """What the scanner made of one file: its path inside the bundle, format, size, digest."""

    path: str
    format: str
    size: int
    sha256: str | None
    findings: tuple[Finding, ...] = ()

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings)

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "sha256": self.sha256,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in sorted(self.findings, key=Finding.sort_key)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FileResult:
        return cls(
            path=str(data["path"]),
            format=str(data["format"]),
            size=int(data["size"]),
            sha256=None if data.get("sha256") is None else str(data["sha256"]),
            findings=tuple(Finding.from_dict(f) for f in data.get("findings", ())),
        )


@dataclass(frozen=True)
class ScanReport:
    """The result of scanning one bundle (or single file)."""

    files: tuple[FileResult, ...]
    scanner_version: str
    numeric: bool = False
    allow: tuple[str, ...] = field(default=())

    @property
    def findings(self) -> tuple[Finding, ...]:
        return tuple(sorted((f for r in self.files for f in r.findings), key=Finding.sort_key))

    @property
    def verdict(self) -> Verdict:
        return verdict_of(self.findings)

    def to_dict(self) -> dict[str, Any]:
        counts = {"clean": 0, "malformed": 0, "unsafe": 0}
        for result in self.files:
            counts[result.verdict] += 1
        return {
            "schema": SCHEMA,
            "scanner": {"name": "modelward", "version": self.scanner_version},
            "options": {"numeric": self.numeric, "allow": sorted(self.allow)},
            "verdict": self.verdict,
            "summary": {"files": len(self.files), **counts, "findings": len(self.findings)},
            "files": [r.to_dict() for r in sorted(self.files, key=lambda r: r.path)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ScanReport:
        options = data.get("options", {})
        return cls(
            files=tuple(FileResult.from_dict(r) for r in data.get("files", ())),
            scanner_version=str(data.get("scanner", {}).get("version", "")),
            numeric=bool(options.get("numeric", False)),
            allow=tuple(str(a) for a in options.get("allow", ())),
        )

    def to_text(self) -> str:
        lines: list[str] = []
        for result in sorted(self.files, key=lambda r: r.path):
            lines.append(f"{result.verdict.upper():9} {result.path} ({result.format})")
            for finding in sorted(result.findings, key=Finding.sort_key):
                where = f" at {finding.location}" if finding.location else ""
                lines.append(
                    f"    {finding.rule_id} [{finding.severity}]{where}: {finding.message}"
                )
        counts = self.to_dict()["summary"]
        lines.append(
            f"verdict: {self.verdict} ({counts['files']} files: {counts['clean']} clean, "
            f"{counts['malformed']} malformed, {counts['unsafe']} unsafe)"
        )
        return "\n".join(lines)
