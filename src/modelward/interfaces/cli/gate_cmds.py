"""Gate commands: promote, override, approve, decisions."""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def _release_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("uri", metavar="URI")
    parser.add_argument("--to", required=True, metavar="ENV", help="target environment")
    parser.add_argument(
        "--flag", action="append", default=[], metavar="KEY=VALUE", help="feature flag"
    )
    parser.add_argument(
        "--prompt-template", action="append", default=[], metavar="FILE", help="repeatable"
    )
    parser.add_argument(
        "--policy-file", action="append", default=[], metavar="FILE", help="repeatable"
    )
    parser.add_argument(
        "--no-carry",
        action="store_true",
        help="do not carry the previous environment's prompt templates, policy files and flags "
        "forward (each of --prompt-template, --policy-file, --flag replaces its own kind anyway)",
    )
    parser.add_argument("--risk-tier", choices=("low", "medium", "high"))
    parser.add_argument(
        "--if-current",
        metavar="RELEASE_ID",
        help="only if ENV's current release is this one ('none': no release yet)",
    )
    add_json_flag(parser)


def register(subparsers: Any) -> None:
    promote = subparsers.add_parser("promote", help="ask the gate to release URI to ENV")
    _release_flags(promote)
    promote.set_defaults(handler=_promote)

    override = subparsers.add_parser("override", help="break glass: release despite a deny")
    _release_flags(override)
    override.add_argument("--justification", required=True, help="why (kept in every report)")
    override.add_argument(
        "--expires", required=True, metavar="DURATION", help="e.g. 4h, 2d, or an RFC 3339 time"
    )
    override.set_defaults(handler=_override)

    approve = subparsers.add_parser("approve", help="approve URI for ENV (not your own)")
    approve.add_argument("uri", metavar="URI")
    approve.add_argument("--for", dest="environment", required=True, metavar="ENV")
    approve.add_argument("--comment", default="")
    approve.add_argument("--sign-off", action="store_true", help="a human sign-off (high risk)")
    add_json_flag(approve)
    approve.set_defaults(handler=_approve)

    decisions = subparsers.add_parser("decisions", help="past gate decisions about URI")
    decisions.add_argument("uri", metavar="URI")
    add_json_flag(decisions)
    decisions.set_defaults(handler=_decisions)


def render_decision(decision: Any, header: bool = True, uri: str = "") -> None:
    verdict = "allow" if decision.allowed else "deny"
    if decision.override is not None:
        verdict = "allow (OVERRIDE)"
    if header:
        emit(f"{verdict}: {uri} → {decision.environment} (policy {decision.policy_digest[:19]}…)")
    else:
        emit(verdict)
    for result in decision.failed_results():
        detail = f" ({result.detail})" if result.detail else ""
        emit(f"  ✗ {result.rule_id} [{result.severity}]: {result.message}{detail}")
    if decision.override is not None:
        o = decision.override
        emit(f"  override by {o.actor} until {o.to_dict()['expires_at']}: {o.justification}")


def _run(args: argparse.Namespace, override: tuple[str, Any] | None) -> int:
    from pathlib import Path

    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService, parse_flag

    flags = dict(parse_flag(text) for text in args.flag) if args.flag else None
    kwargs: dict[str, Any] = {}
    if args.if_current is not None:
        kwargs["expected_release_id"] = None if args.if_current == "none" else args.if_current
    with registry_context() as context:
        result = GateService(context).promote(
            args.uri,
            args.to,
            flags=flags,
            prompt_templates=[Path(p) for p in args.prompt_template] or None,
            policy_files=[Path(p) for p in args.policy_file] or None,
            risk_tier=args.risk_tier,
            override=override,
            carry=not args.no_carry,
            **kwargs,
        )
    if args.json:
        emit_json(result.to_dict())
    else:
        render_decision(result.decision, uri=result.uri)
        if result.release is not None:
            emit(f"release {result.release.release_id}: {result.uri} is now in {args.to}")
            _render_carried(result.carried, args.no_carry)
    return 0 if result.decision.allowed else 1


def _render_carried(carried: Any, no_carry: bool) -> None:
    if carried is None:
        return
    if carried.carried:
        parts = {
            "prompt_templates": "prompt templates " + ", ".join(carried.prompt_templates),
            "policy_files": "policy files " + ", ".join(carried.policy_files),
            "feature_flags": "flags "
            + ", ".join(f"{k}={json.dumps(v)}" for k, v in carried.feature_flags.items()),
        }
        emit(
            f"  carried forward from {carried.source_release_id}: "
            + "; ".join(parts[name] for name in carried.carried)
        )
    elif no_carry:
        emit("  nothing carried forward (--no-carry)")
    if carried.note:
        emit(f"  {carried.note}")


def render_carried_dict(carried: dict[str, Any] | None, no_carry: bool) -> None:
    """`_render_carried` for a promotion's result as JSON (the remote CLI)."""
    from types import SimpleNamespace

    _render_carried(None if carried is None else SimpleNamespace(**carried), no_carry)


def _promote(args: argparse.Namespace) -> int:
    return _run(args, None)


def _override(args: argparse.Namespace) -> int:
    from modelward.core.policy import parse_timestamp
    from modelward.services.context import utc_now
    from modelward.services.gate_config import parse_duration

    text = args.expires.strip()
    if text[:1].isdigit() and ("T" in text or "-" in text[1:]):
        expires = parse_timestamp(text, "--expires")
    else:
        expires = utc_now() + parse_duration(text, "--expires")
    return _run(args, (args.justification, expires))


def _approve(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService

    with registry_context() as context:
        data = GateService(context).approve(
            args.uri, args.environment, comment=args.comment, sign_off=args.sign_off
        )
    if args.json:
        emit_json(data)
    else:
        sign_off = " with sign-off" if data["sign_off"] else ""
        emit(f"{data['reviewer']} approved {data['uri']} for {data['environment']}{sign_off}")
    return 0


def _decisions(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService

    with registry_context() as context:
        rows = GateService(context).decisions(args.uri)
    return render_decisions(args, rows)


def render_decisions(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """Print past decisions as `decisions` does (embedded or remote)."""
    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        verdict = "allow" if row["allowed"] else "deny"
        if row["overridden"]:
            verdict = "allow (OVERRIDE)"
        signed = "signed" if row["signature_verified"] else "SIGNATURE INVALID"
        if row.get("problem"):
            signed += ", NOT TRUSTED"
        emit(f"{row['at']}\t{row['environment']}\t{verdict}\tby {row['by']}\t{signed}")
        if row.get("problem"):
            emit(f"  ! {row['problem']}")
        for failed in row["failed"]:
            emit(f"  ✗ {failed['rule_id']} [{failed['severity']}]: {failed['message']}")
        if row["override"]:
            o = row["override"]
            emit(f"  override by {o['actor']} until {o['expires_at']}: {o['justification']}")
    return 0
