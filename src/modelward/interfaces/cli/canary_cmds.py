"""Canary commands: canary start, status, judge and watch (a bounded loop of `judge --act`).
`start --watch SECONDS` leaves the watching to a server: its job workers queue an acting
judgement every SECONDS (`services.jobs.schedule_canary_judgements`), with no CLI running.

Exit codes: `judge` and `watch` exit 1 on a `rollback` verdict, 0 otherwise; errors as usual."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json

MAX_ITERATIONS = 10_000


def register(subparsers: Any) -> None:
    canary = subparsers.add_parser(
        "canary",
        help="judge a candidate against ENV's release: start, status, judge, watch",
        description="Canary judgement with an always-valid one-sided sequential test (mSPRT) "
        "per metric and Holm's correction across metrics. Verdicts: continue, promote, "
        "rollback, inconclusive; each judged verdict is signed and recorded in the ledger.",
    )
    verbs = canary.add_subparsers(dest="verb", required=True, metavar="VERB")
    start = verbs.add_parser("start", help="start a canary of CANDIDATE against ENV's release")
    start.add_argument("name", metavar="NAME")
    start.add_argument("--env", required=True, metavar="ENV")
    start.add_argument("--candidate", required=True, metavar="URI")
    start.add_argument("--baseline", metavar="URI", help="must be ENV's baseline release")
    start.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="SPEC",
        help="NAME[:lower|higher][:TOLERANCE[:EFFECT]], e.g. refusal:0.01, latency:5%% "
        "(default: error:0.01 refusal:0.01 latency:5%%); metrics: error, refusal, safety, "
        "truncation, latency, ttft, tpot, output_tokens, feedback",
    )
    start.add_argument("--alpha", type=float, default=0.05)
    start.add_argument("--min-samples", type=int, default=100, help="per arm (default 100)")
    start.add_argument("--warmup", type=float, default=0.0, metavar="SECONDS")
    start.add_argument(
        "--watch",
        type=float,
        metavar="SECONDS",
        help="a server judges with --act every SECONDS (1 to 86400) until the canary ends; "
        "its job workers schedule it, no CLI needs to run",
    )
    add_json_flag(start)
    start.set_defaults(handler=_start)
    for verb, helptext in (
        ("status", "the canary, its recorded verdicts, and the verdict now (not recorded)"),
        ("judge", "judge now, sign and record the verdict; --act rolls back on rollback"),
        ("watch", "judge --act every INTERVAL seconds until a final verdict (bounded)"),
        ("shadow", "compare candidate and baseline answers to the same requests (arm shadow)"),
    ):
        p = verbs.add_parser(verb, help=helptext)
        p.add_argument("name", metavar="NAME")
        p.add_argument("--env", required=True, metavar="ENV")
        if verb == "judge":
            p.add_argument("--act", action="store_true", help="roll back on a rollback verdict")
        if verb == "watch":
            p.add_argument("--interval", type=float, default=60.0, metavar="SECONDS")
            p.add_argument("--max-iterations", type=int, default=60, metavar="N")
        add_json_flag(p)
        handlers = {"status": _status, "judge": _judge, "watch": _watch, "shadow": _shadow}
        p.set_defaults(handler=handlers[verb])


def _service(context: Any) -> Any:
    from modelward.services.canary import CanaryService, telemetry_source

    return CanaryService(context, source=telemetry_source(context))


def _start(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context

    with registry_context() as context:
        data = _service(context).start(
            args.name,
            args.env,
            args.candidate,
            args.baseline,
            args.metric,
            alpha=args.alpha,
            min_samples=args.min_samples,
            warmup_s=args.warmup,
            watch_s=args.watch,
        )
    return render_start(args, data)


def render_start(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
    else:
        emit(
            f"canary {data['canary_id']}: {data['candidate']} against release "
            f"{data['baseline_release_id']} (models:/{args.name}/{data['baseline_version']}) "
            f"in {args.env}"
        )
        for metric in data["metrics"]:
            emit(f"  {metric['name']}: {metric['direction']} is better")
        if data.get("watch_s") is not None:
            emit(f"  judged and acted on by the server every {data['watch_s']:g}s")
    return 0


def _render_verdict(data: dict[str, Any]) -> None:
    emit(f"verdict: {data['verdict']}")
    for reason in data["reasons"]:
        emit(f"  {reason}")
    for m in data["metrics"]:
        stats = f"n {m['n_canary']}/{m['n_baseline']}"
        if m["degradation"] is not None:
            stats += (
                f", degradation {m['degradation']:.4g} (tolerated {m['threshold']:.4g}), "
                f"p degraded {m['p_degraded_holm']:.3g}, p within {m['p_non_inferior_holm']:.3g}"
            )
        emit(f"  {m['metric']:<14}{m['status']:<14}{stats}")


def _status(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context

    with registry_context() as context:
        data = _service(context).status(args.name, args.env)
    return render_status(args, data)


def render_status(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
        return 0
    state = "ended" if data["ended"] else "running"
    emit(
        f"canary {data['canary_id']} ({state}): {data['candidate']} against "
        f"{data['baseline_release_id']}, {args.env} is on {data['current_release_id']}"
    )
    emit(f"  started {data['started_at']} by {data['started_by']}")
    for v in data["recorded_verdicts"]:
        acted = f", {v['acted']}" if v["acted"] else ""
        emit(f"  recorded {v['at']} by {v['by']}: {v['verdict']}{acted}")
    _render_verdict(data["now"])
    return 0


def _shadow(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context

    with registry_context() as context:
        data = _service(context).shadow(args.name, args.env)
    return render_shadow(args, data)


def render_shadow(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
        return 0
    emit(f"shadow {data['candidate']} against {data['baseline_release_id']}: {data['status']}")
    emit(f"  {data['pairs']} pairs ({data['unpaired']} shadow requests unpaired)")
    for label, key in (
        ("length change", "length_relative_change"),
        ("refusal, baseline", "refusal_baseline"),
        ("refusal, candidate", "refusal_candidate"),
        ("refusal disagreement", "refusal_disagreement"),
        ("agreement", "agreement"),
    ):
        value = data[key]
        emit(f"  {label:<22}{'-' if value is None else f'{value:.1%}'}")
    for reason in data["reasons"]:
        emit(f"  {reason}")
    return 0


def _judge(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context

    with registry_context() as context:
        data = _service(context).judge(args.name, args.env, act=args.act).to_dict()
    return render_judge(args, data)


def render_judge(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
    else:
        _render_verdict(data)
        emit(f"  recorded, statement {data['statement_digest']}")
        if data["acted"]:
            emit(f"  acted: {data['acted']}; alerts delivered: {data['alerts_delivered']}")
    return 1 if data["verdict"] == "rollback" else 0


def _watch(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context

    check_watch_args(args)
    with registry_context() as context:
        service = _service(context)
        return watch(args, lambda: service.judge(args.name, args.env, act=True).to_dict())


def check_watch_args(args: argparse.Namespace) -> None:
    from modelward.errors import InputError

    if not 0 <= args.interval <= 86400 or not 1 <= args.max_iterations <= MAX_ITERATIONS:
        raise InputError(
            f"--interval must be 0 to 86400 seconds and --max-iterations 1 to {MAX_ITERATIONS}"
        )


def watch(args: argparse.Namespace, judge_and_act: Callable[[], dict[str, Any]]) -> int:
    """`judge --act` every --interval seconds until a final verdict or --max-iterations."""
    import time

    results = []
    for iteration in range(args.max_iterations):
        data = judge_and_act()
        results.append(data)
        if not args.json:
            emit(f"[{iteration + 1}] {data['verdict']}: {'; '.join(data['reasons'][:2])}")
        if data["verdict"] in ("rollback", "promote"):
            break
        if iteration + 1 < args.max_iterations:
            time.sleep(args.interval)
    if args.json:
        emit_json(
            {"iterations": len(results), "verdict": results[-1]["verdict"], "last": results[-1]}
        )
    return 1 if results[-1]["verdict"] == "rollback" else 0
