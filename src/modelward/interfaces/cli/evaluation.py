"""`modelward eval`: attach, run and compare evaluations (in-toto test-result attestations)."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    evaluation = subparsers.add_parser("eval", help="evaluation evidence for versions")
    verbs = evaluation.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    attach = verbs.add_parser("attach", help="attach a results file as a signed attestation")
    attach.add_argument("uri", metavar="URI")
    attach.add_argument("--suite", required=True)
    attach.add_argument("--results", required=True, metavar="FILE")
    add_json_flag(attach)
    attach.set_defaults(handler=_attach)

    run = verbs.add_parser(
        "run",
        help="run COMMAND on the pulled bundle, without network, and attach its results",
        description="COMMAND sees $MODELWARD_BUNDLE (the verified bundle) and must write its "
        "results to $MODELWARD_RESULTS. Exit 0 when attached and COMMAND succeeded, 1 otherwise.",
    )
    run.add_argument("--suite")
    run.add_argument("--timeout", type=float, default=3600.0, metavar="SECONDS")
    add_json_flag(run)
    # URI, then options, then `--` and the command: argparse cannot mix a positional, later
    # options and `--` under a subcommand, so the handler splits this remainder itself.
    run.add_argument("rest", nargs=argparse.REMAINDER, metavar="URI [OPTIONS] -- COMMAND...")
    run.set_defaults(handler=_run)

    comparison = verbs.add_parser("compare", help="metric deltas from URI_A to URI_B")
    comparison.add_argument("uri_a", metavar="URI_A")
    comparison.add_argument("uri_b", metavar="URI_B")
    comparison.add_argument("--suite", help="only this suite")
    add_json_flag(comparison)
    comparison.set_defaults(handler=_compare)

    from modelward.interfaces.cli.trust_cmds import register_thresholds

    register_thresholds(verbs)


def _attach(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.interfaces.cli._evidence import evidence_service

    with evidence_service() as service:
        data = service.attach_results_file(args.uri, args.suite, Path(args.results))
    _render(args, data)
    return 0


def _run(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._evidence import evidence_service

    rest = list(args.rest)
    split = rest.index("--") if "--" in rest else len(rest)
    head, command = rest[:split], rest[split + 1 :]
    late = argparse.ArgumentParser(prog="modelward eval run", add_help=False)
    late.add_argument("uri", metavar="URI")
    late.add_argument("--suite", default=args.suite)
    late.add_argument("--timeout", type=float, default=args.timeout)
    late.add_argument("--json", action="store_true", default=args.json)
    parsed = late.parse_args(head)
    if not parsed.suite:
        raise InputError("eval run needs --suite NAME")
    with evidence_service() as service:
        data = service.run_evaluation(parsed.uri, parsed.suite, command, parsed.timeout)
    _render(parsed, data)
    if not parsed.json:
        emit(f"command exited with {data['exit_code']} (network: {data['network']})")
    return 0 if data["exit_code"] == 0 else 1


def _render(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        emit_json(data)
        return
    metrics = ", ".join(f"{k}={v}" for k, v in sorted(data["metrics"].items()))
    emit(f"attached {data['suite']} to {data['uri']}: {data['result']} {metrics}".rstrip())


def _compare(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._evidence import evidence_service

    with evidence_service() as service:
        result = service.compare(args.uri_a, args.uri_b, args.suite)
    if args.json:
        emit_json({"a": result.a, "b": result.b, "metrics": result.deltas})
        return 0
    emit(f"metric\t{result.a}\t{result.b}\tdelta")
    for row in result.deltas:
        delta = "-" if row["delta"] is None else f"{row['delta']:+g}"
        relative = "" if row["relative"] is None else f" ({row['relative']:+.2%})"
        a = "-" if row["a"] is None else f"{row['a']:g}"
        b = "-" if row["b"] is None else f"{row['b']:g}"
        emit(f"{row['name']}\t{a}\t{b}\t{delta}{relative}")
    return 0
