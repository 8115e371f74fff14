"""`modelward bom`: a version's CycloneDX 1.6 ML-BOM (JSON)."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import emit


def register(subparsers: Any) -> None:
    bom = subparsers.add_parser("bom", help="write a version's CycloneDX 1.6 ML-BOM")
    bom.add_argument("uri", metavar="URI")
    bom.add_argument("--out", metavar="FILE", help="write here instead of stdout")
    bom.set_defaults(handler=_bom)


def _bom(args: argparse.Namespace) -> int:
    import sys
    from pathlib import Path

    from modelward.errors import PathError
    from modelward.interfaces.cli._evidence import evidence_service

    with evidence_service() as service:
        text = service.bom(args.uri)
    if args.out:
        try:
            Path(args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise PathError(f"{args.out}: cannot write: {exc.strerror or exc}") from exc
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        emit(text)
    return 0
