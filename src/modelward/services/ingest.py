"""The ingest gate in front of `push`: scan every file that will be stored, refuse unsafe bundles
(and malformed ones unless each malformed rule is explicitly accepted), and turn the report into
the predicate of a signed scan attestation.

Decides and describes; stores nothing and writes no ledger event (the registry service does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelward.errors import DeniedError
from modelward.storage.model_files import ModelFile

SCAN_PREDICATE_TYPE = "https://modelward.dev/attestations/scan/v1"


class ScanRefusedError(DeniedError):
    """The scan found unsafe content, or malformed files that were not accepted."""

    def __init__(self, message: str, reasons: list[str], report: dict[str, Any]) -> None:
        super().__init__(message, reasons)
        self.report = report


def scan_for_push(
    model_path: Path,
    files: Sequence[ModelFile],
    *,
    accept_malformed: Sequence[str] = (),
    numeric: bool = False,
    allow: Sequence[str] = (),
    sha256: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Scan exactly the files a push would store; return the report as a dict, or refuse.

    Each file's entry carries the sha256 of the bytes scanned; `sha256` (report path to digest)
    passes digests already computed over the same, unchangeable bytes instead of hashing again.
    """
    from modelward.scanning import scan

    report = scan(model_path, numeric=numeric, allow=allow, sha256=sha256)
    if model_path.is_dir():
        wanted = {f.name for f in files}
        report = dataclasses.replace(
            report, files=tuple(r for r in report.files if r.path in wanted)
        )
    data = report.to_dict()
    findings = report.findings
    unsafe = [f for f in findings if f.impact == "unsafe"]
    malformed = [f for f in findings if f.impact == "malformed"]
    not_accepted = [f for f in malformed if f.rule_id not in set(accept_malformed)]
    if unsafe:
        raise ScanRefusedError(
            f"push refused: the scan found unsafe content in {len({f.file for f in unsafe})} "
            "file(s); nothing was stored",
            [_describe(f) for f in unsafe + not_accepted],
            data,
        )
    if not_accepted:
        rules = sorted({f.rule_id for f in not_accepted})
        raise ScanRefusedError(
            "push refused: malformed files (accept them explicitly with "
            + " ".join(f"--accept-malformed {r}" for r in rules)
            + "); nothing was stored",
            [_describe(f) for f in not_accepted],
            data,
        )
    data["accepted_malformed"] = sorted({f.rule_id for f in malformed})
    return data


def _describe(finding: Any) -> str:
    where = f" at {finding.location}" if getattr(finding, "location", None) else ""
    return f"{finding.rule_id} {finding.file}{where}: {finding.message}"
