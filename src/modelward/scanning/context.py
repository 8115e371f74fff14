"""The state one file's scan carries: options, limits, and the findings collected so far.

Format scanners receive a `ScanContext` and a `where` prefix (the member path inside an
archive, empty at top level) and report through `ctx.add`. Nested containers call back into
`ctx.scan_nested`, which the engine provides, so depth and total-size limits hold across levels.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelward.scanning.allowlist import AllowList
from modelward.scanning.pickle_values import Buffer, PickleResult
from modelward.scanning.report import Finding

MAX_FINDINGS_PER_FILE = 200


@dataclass(frozen=True)
class Limits:
    """Bounds that make every scan finish in bounded time and memory."""

    max_depth: int = 4
    max_members: int = 100_000
    max_member_bytes: int = 4 << 30
    max_total_expanded: int = 64 << 30
    max_ratio: int = 200
    max_in_memory: int = 512 << 20
    max_header_bytes: int = 100 << 20
    max_json_bytes: int = 64 << 20


NestedScan = Callable[["ScanContext", Buffer, str], str]


@dataclass
class ScanContext:
    allow: AllowList
    file: str
    numeric: bool = False
    limits: Limits = field(default_factory=Limits)
    depth: int = 0
    expanded: int = 0
    findings: list[Finding] = field(default_factory=list)
    external_refs: list[tuple[str, str, int, int]] = field(default_factory=list)
    scan_nested: NestedScan | None = None

    def add(self, rule_id: str, location: str, message: str) -> None:
        if len(self.findings) >= MAX_FINDINGS_PER_FILE:
            return
        finding = Finding(rule_id=rule_id, file=self.file, location=location, message=message)
        if finding not in self.findings:
            self.findings.append(finding)
            if len(self.findings) == MAX_FINDINGS_PER_FILE:
                self.findings.append(
                    Finding(
                        "MW-FMT-LIMIT", self.file, "", "too many findings; the rest are omitted"
                    )
                )

    def add_pickle(self, result: PickleResult, where: str, base: int = 0) -> None:
        for raw in result.findings:
            self.add(raw.rule_id, at(where, f"offset {base + raw.offset}"), raw.message)

    def nested(self, data: Buffer, where: str) -> str:
        """Scan bytes found inside a container (an archive member); returns their format."""
        if self.scan_nested is None:
            return "unknown"
        if self.depth >= self.limits.max_depth:
            self.add("MW-FMT-LIMIT", where, "containers are nested deeper than the limit")
            return "unknown"
        self.depth += 1
        try:
            return self.scan_nested(self, data, where)
        finally:
            self.depth -= 1


def at(where: str, detail: str = "") -> str:
    """Join a member path and a detail into a location string."""
    if where and detail:
        return f"{where}, {detail}"
    return where or detail
