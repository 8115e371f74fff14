"""The ingest gate in front of `push`: scan every file that will be stored, refuse unsafe bundles
(and malformed ones unless each malformed rule is explicitly accepted), and turn the report into
the predicate of a signed scan attestation.

The registry service runs the scanner on its private staged copy of the bundle (the bytes it
then stores), and `bind_report_to_files` ties the report to those bytes: every stored file must
appear in it with the sha256 the scanner read, equal to the manifest's digest. The allow-list
comes from the registry's `scan.allow` setting only (never `modelward.toml`).

Decides and describes; stores nothing and writes no ledger event (the registry service does).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from modelward.core.intoto import SCAN_PREDICATE_TYPE as SCAN_PREDICATE_TYPE
from modelward.errors import DeniedError
from modelward.storage.model_files import ModelFile
from modelward.storage.staging import StagedBundle

BundleScanner = Callable[[Path, Sequence[ModelFile]], dict[str, Any]]
"""Scans the staged bundle at the path (its files listed); returns the report or refuses."""


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
    refusing: str = "push",
    sha256: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Scan exactly the files a push would store; return the report as a dict, or refuse
    (`refusing` names what is refused in the message: a push, a promotion).

    Each file's entry carries the sha256 of the bytes scanned; `sha256` (report path to digest)
    passes digests already computed over the same, unchangeable bytes instead of hashing again.
    """
    from modelward.scanning import scan

    report = scan(model_path, numeric=numeric, allow=allow, use_config=False, sha256=sha256)
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
            f"{refusing} refused: the scan found unsafe content in {len({f.file for f in unsafe})} "
            "file(s); nothing was stored",
            [_describe(f) for f in unsafe + not_accepted],
            data,
        )
    if not_accepted:
        rules = sorted({f.rule_id for f in not_accepted})
        raise ScanRefusedError(
            f"{refusing} refused: malformed files (accept them explicitly with "
            + " ".join(f"--accept-malformed {r}" for r in rules)
            + "); nothing was stored",
            [_describe(f) for f in not_accepted],
            data,
        )
    data["accepted_malformed"] = sorted({f.rule_id for f in malformed})
    return data


def push_scanner(
    *,
    allow: Sequence[str] = (),
    accept_malformed: Sequence[str] = (),
    numeric: bool = False,
    refusing: str = "push",
) -> BundleScanner:
    """The scanner a push runs: `scan_for_push` with the registry's allow-list additions."""

    def run(model_path: Path, files: Sequence[ModelFile]) -> dict[str, Any]:
        return scan_for_push(
            model_path,
            files,
            accept_malformed=accept_malformed,
            numeric=numeric,
            allow=allow,
            refusing=refusing,
        )

    return run


def scan_staged(staged: StagedBundle, scanner: BundleScanner) -> dict[str, Any]:
    """Run `scanner` on the staged copy and tie its report to the staged (to be stored) bytes."""
    report = scanner(staged.scan_path, staged.model_files())
    return bind_report_to_files(report, {f.name: f.digest for f in staged.files})


def bind_report_to_files(report: Mapping[str, Any], digests: Mapping[str, str]) -> dict[str, Any]:
    """The report with each file's sha256 checked against (or, where the scanner left it out,
    set from) the digest of the bytes stored; `digests` maps manifest names to hex digests.

    Refuses (ScanRefusedError) a report that misses a stored file or names other bytes: then
    what was scanned is not what would be stored.
    """
    data = dict(report)
    entries = [dict(e) for e in data.get("files", []) if isinstance(e, Mapping)]
    by_path = {str(e.get("path")): e for e in entries}
    if list(digests) == ["."] and len(entries) == 1:
        by_path = {".": entries[0]}
    problems = []
    for name, digest in digests.items():
        entry = by_path.get(name)
        if entry is None:
            problems.append(f"{name}: the scan report does not cover this file")
            continue
        scanned = entry.get("sha256")
        if scanned is None:
            entry["sha256"] = digest
        elif scanned != digest:
            problems.append(
                f"{name}: the scanner read bytes hashing to sha256:{scanned}, "
                f"the stored bytes hash to sha256:{digest}"
            )
    if problems:
        raise ScanRefusedError(
            "push refused: what was scanned is not what would be stored; nothing was stored",
            problems,
            data,
        )
    data["files"] = entries
    return data


def _describe(finding: Any) -> str:
    where = f" at {finding.location}" if getattr(finding, "location", None) else ""
    return f"{finding.rule_id} {finding.file}{where}: {finding.message}"
