"""`modelward forensics compare`: a version's weights, tokenizer and configuration against its
base, with a quantisation claim checked; the result is attested."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    forensics = subparsers.add_parser("forensics", help="weight forensics against a base")
    verbs = forensics.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    compare = verbs.add_parser(
        "compare",
        help="compare a version with its base and attest the result",
        description="Which tensors changed and how (relative change; effective rank and top-k "
        "energy of each 2-D delta), tensors added or removed, tokenizer, vocabulary, special "
        "token, configuration and chat-template differences. With --claim FORMAT, the "
        "candidate must equal the base within FORMAT's quantisation error. Exit 0 when "
        "nothing was flagged, 1 when something was.",
    )
    compare.add_argument("uri", metavar="URI")
    compare.add_argument("--base", required=True, metavar="URI")
    compare.add_argument(
        "--claim", metavar="FORMAT", help="a quantisation claim: Q8_0, Q4_0, Q4_1, Q5_0, ..."
    )
    compare.add_argument("--top-k", type=int, default=8, metavar="K")
    compare.add_argument(
        "--changed", action="store_true", help="list only changed tensors (human output)"
    )
    add_json_flag(compare)
    compare.set_defaults(handler=_compare)


def _compare(args: argparse.Namespace) -> int:
    from modelward.services.context import open_registry
    from modelward.services.forensics import ForensicsService

    context = open_registry()
    try:
        report = ForensicsService(context).compare(
            args.uri, args.base, claim=args.claim, top_k=args.top_k
        )
    finally:
        context.close()
    data = report.to_dict()
    if args.json:
        emit_json(data)
        return 0 if report.passed else 1
    summary = data["summary"]
    claim = f" as a {data['claim']} build" if data["claim"] else ""
    emit(f"{data['candidate']['uri']} against {data['base']['uri']}{claim}")
    emit(
        f"tensors: {summary['tensors']}, changed: {summary['changed']}, "
        f"added: {len(summary['added'])}, removed: {len(summary['removed'])}"
    )
    emit("tensor\tstatus\trelative_change\teffective_rank\ttop_k_energy")
    for t in data["tensors"]:
        if args.changed and not t["changed"]:
            continue
        cells = [t["relative_change"], t["effective_rank"], t["top_k_energy"]]
        shown = ["-" if c is None else f"{c:.4g}" for c in cells]
        emit("\t".join([t["name"], t["status"], *shown]))
    for key in ("vocabulary", "special_tokens", "chat_template", "tokenizer", "config"):
        emit(f"{key}: {'changed' if data['metadata'][key]['changed'] else 'same'}")
    for finding in data["findings"]:
        emit(f"FLAGGED: {finding}")
    emit("passed" if report.passed else "flagged")
    return 0 if report.passed else 1
