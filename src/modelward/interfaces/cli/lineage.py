"""`modelward lineage`: the upstream tree of a version, or what was built on a dataset/version."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    lineage = subparsers.add_parser(
        "lineage", help="datasets → training run → base model → version → aliases"
    )
    lineage.add_argument("uri", metavar="URI", help="models:/…, sha256:… or datasets:/NAME/N")
    lineage.add_argument(
        "--downstream", action="store_true", help="every version built on URI, transitively"
    )
    add_json_flag(lineage)
    lineage.set_defaults(handler=_lineage)


def _lineage(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._evidence import provenance_service

    with provenance_service() as service:
        data = service.lineage(args.uri, downstream=args.downstream)
    if args.json:
        emit_json({k: v for k, v in data.items() if k != "lines"})
    elif "tree" in data:
        for line in data["lines"]:
            emit(line)
    else:
        emit(
            f"built on {data['uri']}:"
            if data["downstream"]
            else f"nothing is built on {data['uri']}"
        )
        for version in data["downstream"]:
            emit(f"  {version['uri']}\tsha256:{version['rootDigest']}")
    return 0
