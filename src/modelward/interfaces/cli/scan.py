"""`modelward scan PATH...`: scan model files or bundles and print a report.

Exit codes: 0 clean, 1 something unsafe was found, 3 something malformed and nothing unsafe,
2 usage or input errors (unknown option, missing path, bad --allow entry).
"""

from __future__ import annotations

import argparse
from typing import Any

EXIT_CLEAN = 0
EXIT_UNSAFE = 1
EXIT_MALFORMED = 3


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "scan",
        help="scan model files for code execution, malformed structure and bad weights",
        description=(
            "Scan files or bundle directories. Formats are read from the bytes; pickles are "
            "checked against an allow-list of imports; nothing is loaded or executed. "
            "Exit 0 clean, 1 unsafe, 3 malformed (nothing unsafe), 2 usage error."
        ),
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="file or bundle directory")
    parser.add_argument(
        "--format",
        choices=("text", "json", "sarif"),
        default="text",
        help="output format (sarif: SARIF 2.1.0 for GitHub code scanning)",
    )
    parser.add_argument("--json", action="store_true", help="same as --format json")
    parser.add_argument(
        "--numeric", action="store_true", help="also sweep tensors for NaN, Inf and constants"
    )
    parser.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="GLOBAL",
        help="also allow this pickle global (module:name or module.name); repeatable",
    )
    parser.add_argument(
        "--no-config",
        action="store_true",
        help="ignore [scan] allow in $MODELWARD_HOME/modelward.toml",
    )
    parser.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    parser.set_defaults(handler=run_scan)


def run_scan(args: argparse.Namespace) -> int:
    import json

    from modelward.scanning import parse_global, scan_paths, to_sarif

    for entry in args.allow:
        parse_global(entry)
    report = scan_paths(
        args.paths, numeric=args.numeric, allow=tuple(args.allow), use_config=not args.no_config
    )
    fmt = "json" if args.json else args.format
    if fmt == "json":
        text = json.dumps(report.to_dict(), indent=2, sort_keys=True)
    elif fmt == "sarif":
        text = json.dumps(to_sarif(report), indent=2, sort_keys=True)
    else:
        text = report.to_text()
    if args.output:
        from pathlib import Path

        from modelward.errors import PathError

        try:
            Path(args.output).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise PathError(f"cannot write {args.output}: {exc.strerror}") from exc
        if fmt != "text":
            print(report.to_text())
    else:
        print(text)
    if report.verdict == "unsafe":
        return EXIT_UNSAFE
    if report.verdict == "malformed":
        return EXIT_MALFORMED
    return EXIT_CLEAN
