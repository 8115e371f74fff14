"""`modelward reproduce check`: compare a rebuilt bundle with a version and attest the result."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    reproduce = subparsers.add_parser("reproduce", help="reproducibility checks")
    verbs = reproduce.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    check = verbs.add_parser(
        "check", help="exit 0 if the rebuilt bundle is identical to the version, 1 if it differs"
    )
    check.add_argument("uri", metavar="URI")
    check.add_argument("--rebuilt", required=True, metavar="PATH")
    add_json_flag(check)
    check.set_defaults(handler=_check)


def _check(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.interfaces.cli._evidence import evidence_service

    with evidence_service() as service:
        result = service.reproduce_check(args.uri, Path(args.rebuilt))
    if args.json:
        emit_json(result.to_dict())
    elif result.identical:
        emit(f"identical: sha256:{result.rebuilt_root} ({len(result.unchanged)} files)")
    else:
        emit(
            f"differs: expected sha256:{result.expected_root}, rebuilt sha256:{result.rebuilt_root}"
        )
        for line in result.describe():
            emit(f"  {line}")
    return 0 if result.identical else 1
