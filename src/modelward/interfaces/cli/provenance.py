"""`modelward provenance record`: run a training command and write its signed SLSA provenance."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    provenance = subparsers.add_parser("provenance", help="training provenance (SLSA v1)")
    verbs = provenance.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    record = verbs.add_parser(
        "record",
        help="run COMMAND (optional) and sign the provenance of the bundle it wrote",
        description="Runs COMMAND (after --), then writes a signed SLSA v1 provenance statement "
        "about the output bundle. Without COMMAND it records and signs the given facts only.",
    )
    record.add_argument("--output", required=True, metavar="BUNDLE", help="the trained bundle")
    record.add_argument("--key", required=True, help="private key to sign the statement with")
    record.add_argument(
        "--dataset", action="append", default=[], metavar="datasets:/NAME/N", help="repeatable"
    )
    record.add_argument("--base-model", metavar="URI_OR_SHA256")
    record.add_argument("--hyperparameters", metavar="FILE.json")
    record.add_argument("--seed", action="append", default=[], metavar="[NAME=]N")
    record.add_argument(
        "--out", metavar="FILE", help="where to write it (default BUNDLE.provenance.dsse.json)"
    )
    record.add_argument("--timeout", type=float, metavar="SECONDS", help="limit for COMMAND")
    record.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    add_json_flag(record)
    record.set_defaults(handler=_record)

    from modelward.interfaces.cli.trust_cmds import register_provenance_requirements

    register_provenance_requirements(verbs)


def _record(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.services.provenance import (
        parse_seeds,
        read_hyperparameters,
        record_run,
    )

    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    seeds = parse_seeds(args.seed)
    hyperparameters = read_hyperparameters(
        Path(args.hyperparameters) if args.hyperparameters else None
    )
    datasets: list[Any] = []
    base = None
    if args.dataset or (args.base_model and not args.base_model.startswith("sha256:")):
        from modelward.interfaces.cli._evidence import provenance_service

        with provenance_service() as service:
            datasets, base = service.resolve_inputs(args.dataset, args.base_model)
    elif args.base_model:
        from modelward.core.names import parse_uri
        from modelward.provenance.slsa import BaseModel

        base = BaseModel(digest=parse_uri(args.base_model).digest or "")
    result = record_run(
        output=Path(args.output),
        key=Path(args.key),
        out=Path(args.out) if args.out else None,
        command=command,
        datasets=datasets,
        base_model=base,
        hyperparameters=hyperparameters,
        seeds=seeds,
        timeout=args.timeout,
    )
    missing = [name for name, ok in result.completeness.items() if not ok]
    if args.json:
        emit_json(
            {
                "path": str(result.path),
                "subject": f"sha256:{result.root_digest}",
                "completeness": result.completeness,
                "missing": missing,
            }
        )
    else:
        emit(f"wrote {result.path} (subject sha256:{result.root_digest})")
        if missing:
            emit(f"not recorded: {', '.join(missing)}")
    return 0
