"""`modelward facts URI --to ENV [--json]`: the facts a promotion would see, without deciding."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    facts = subparsers.add_parser(
        "facts", help="the facts a promotion of URI to ENV would see (nothing is stored)"
    )
    facts.add_argument("uri", metavar="URI")
    facts.add_argument("--to", required=True, metavar="ENV", help="target environment")
    facts.add_argument("--risk-tier", choices=("low", "medium", "high"))
    add_json_flag(facts)
    facts.set_defaults(handler=_facts)


def _facts(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate import GateService

    with registry_context() as context:
        facts = GateService(context).facts(args.uri, args.to, args.risk_tier)
    if args.json:
        emit_json(facts)
    else:
        render_facts(facts)
    return 0


def render_facts(facts: dict[str, Any]) -> None:
    candidate = facts["candidate"]
    emit(f"{candidate['uri']} → {facts['environment']['name']} (at {facts['time']})")
    emit(f"  digest: {candidate['digest']}  author: {candidate['author'] or '-'}")
    emit(f"  deployed in: {', '.join(candidate['deployed_in']) or '-'}")
    signatures = facts["signatures"] or {}
    trusted = ", ".join(k[:16] + "…" for k in signatures.get("key_ids", [])) or "none"
    registry = "verified" if signatures.get("registry_signed") else "NOT verified"
    emit(f"  signatures: registry {registry}; trusted keys: {trusted}")
    for item in signatures.get("unverified", []):
        emit(f"    not counted: {item}")
    scan = facts["scan"]
    emit(f"  scan: {scan['verdict'] if scan else 'none'}")
    provenance = facts["provenance"]
    if provenance and provenance["present"]:
        state = "complete" if provenance["complete"] else "INCOMPLETE"
        missing = f" (missing: {', '.join(provenance['missing'])})" if provenance["missing"] else ""
        emit(f"  provenance: {state}{missing}")
    else:
        emit("  provenance: none")
    datasets = facts.get("datasets")
    if datasets is None:
        emit("  datasets: unknown")
    else:
        emit(f"  datasets: {', '.join(datasets['uris']) or '-'}")
        for uri, reasons in datasets["ineligible"].items():
            emit(f"    INELIGIBLE {uri}: {'; '.join(reasons)}")
    evaluations = facts["evaluations"]
    if evaluations is None:
        emit("  evaluations: none")
    else:
        for name, metric in evaluations["metrics"].items():
            if metric["threshold"] is None:
                bar = "no threshold set"
            else:
                sign = ">=" if metric["higher_is_better"] else "<="
                bar = f"needs {sign} {metric['threshold']:g}"
            emit(f"  metric {name} = {metric['value']:g} ({metric['suite'] or '-'}; {bar})")
    emit(f"  approvals: {', '.join(a['reviewer'] for a in facts['approvals']) or 'none'}")
    drill = facts["rollback_drill"]
    if drill is None:
        emit("  rollback drill: none")
    else:
        emit(f"  rollback drill: {'passed' if drill['passed'] else 'FAILED'} at {drill['at']}")
    for problem in facts.get("evidence_problems", []):
        emit(f"  evidence not used: {problem}")
