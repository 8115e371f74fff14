"""Policy commands: policy set (admin), policy show, policy test (for policy authors)."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    policy = subparsers.add_parser("policy", help="environment policies (CEL rules in YAML)")
    verbs = policy.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    set_ = verbs.add_parser("set", help="install FILE as ENV's policy (admin only)")
    set_.add_argument("environment", metavar="ENV")
    set_.add_argument("file", metavar="FILE")
    add_json_flag(set_)
    set_.set_defaults(handler=_set)
    show = verbs.add_parser("show", help="ENV's current policy (or the shipped default)")
    show.add_argument("environment", metavar="ENV")
    add_json_flag(show)
    show.set_defaults(handler=_show)
    test = verbs.add_parser("test", help="evaluate FILE on a facts document; exit 1 if denied")
    test.add_argument("file", metavar="FILE")
    test.add_argument("--facts", required=True, metavar="FACTS.json")
    add_json_flag(test)
    test.set_defaults(handler=_test)


def read_input(path_text: str, what: str, limit: int = 16 * 1024 * 1024) -> bytes:
    from pathlib import Path

    from modelward.errors import PathError

    path = Path(path_text)
    try:
        if not path.is_file():
            raise PathError(f"{path}: the {what} is not a readable file")
        if path.stat().st_size > limit:
            raise PathError(f"{path}: the {what} is larger than {limit} bytes")
        return path.read_bytes()
    except OSError as exc:
        raise PathError(f"{path}: cannot read the {what}: {exc.strerror or exc}") from exc


def _set(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService

    text = read_input(args.file, "policy file")
    with registry_context() as context:
        data = GateService(context).set_policy(args.environment, text)
    if args.json:
        emit_json(data)
    else:
        emit(f"policy for {data['environment']}: {data['digest']} ({data['rules']} rules)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService

    with registry_context() as context:
        data = GateService(context).show_policy(args.environment)
    if args.json:
        emit_json(data)
    else:
        origin = (
            f"set by {data['set_by']} at {data['set_at']}"
            if data["source"] == "set"
            else "the shipped default"
        )
        emit(f"# {data['environment']}: {data['digest']} ({origin})")
        emit(data["text"])
    return 0


def _test(args: argparse.Namespace) -> int:
    import json

    from modelward.errors import InputError
    from modelward.interfaces.cli.gate_cmds import render_decision
    from modelward.services.gate import test_policy

    text = read_input(args.file, "policy file")
    raw = read_input(args.facts, "facts file")
    try:
        facts = json.loads(raw)
    except ValueError as exc:
        raise InputError(f"{args.facts}: the facts are not JSON: {exc}") from exc
    decision = test_policy(text, facts)
    if args.json:
        emit_json(decision.to_dict())
    else:
        for result in decision.results:
            mark = "skip" if result.skipped else ("pass" if result.passed else "FAIL")
            detail = f" ({result.detail})" if result.detail and not result.passed else ""
            emit(f"{mark}\t{result.rule_id}\t{result.severity}\t{result.message}{detail}")
        render_decision(decision, header=False)
    return 0 if decision.allowed else 1
