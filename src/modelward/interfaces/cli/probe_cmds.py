"""`modelward probe run`: behavioural probes of a version against a baseline in a sandbox;
the result is attested."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    probe = subparsers.add_parser("probe", help="behavioural probes in a sandbox")
    verbs = probe.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    run = verbs.add_parser(
        "run",
        help="probe a version against its baseline and attest the result",
        description="Loads both versions (verified) in a sandbox without network, with "
        "read-only files, the registry hidden, memory/CPU/time limits and a scrubbed "
        "environment; compares next-token distributions (KL) on clean and trigger-candidate "
        "prompts, refusals on a safety set and completion lengths. The baseline defaults to "
        "the base model the version's verified provenance declares. Exit 0 when nothing was "
        "flagged, 1 when something was.",
    )
    run.add_argument("uri", metavar="URI")
    run.add_argument("--suite", required=True, metavar="SUITE", help="a suite file, or 'default'")
    run.add_argument("--baseline", metavar="URI")
    run.add_argument("--memory-mb", type=int, default=8192, metavar="MB")
    run.add_argument("--cpu-seconds", type=int, default=1800, metavar="SECONDS")
    run.add_argument("--timeout", type=float, default=1800.0, metavar="SECONDS")
    add_json_flag(run)
    run.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from modelward.forensics.sandbox import SandboxLimits
    from modelward.services.context import open_registry
    from modelward.services.probes import ProbeService, resolve_suite

    suite = resolve_suite(args.suite)
    limits = SandboxLimits(
        memory_bytes=args.memory_mb * 1024 * 1024,
        cpu_seconds=args.cpu_seconds,
        wall_seconds=args.timeout,
    )
    context = open_registry()
    try:
        report = ProbeService(context).run(args.uri, suite, baseline=args.baseline, limits=limits)
    finally:
        context.close()
    data = report.to_dict()
    if args.json:
        emit_json(data)
        return 0 if report.passed else 1
    kl = data["kl"]
    emit(
        f"{data['candidate']['uri']} against {data['baseline']['uri']}: suite "
        f"{data['suite']['name']} v{data['suite']['version']}, {data['prompts']} prompts"
    )
    emit(f"KL median on clean prompts: {kl['clean_median']:.4f} nats")
    for trigger, value in kl["per_trigger_median"].items():
        emit(f"KL median with trigger {trigger!r}: {value:.4f} nats")
    emit(
        f"refusals: {data['refusal']['candidate']:.0%} (baseline "
        f"{data['refusal']['baseline']:.0%}); mean length {data['length']['candidate_mean']} "
        f"(baseline {data['length']['baseline_mean']}) tokens"
    )
    for finding in data["findings"]:
        emit(f"FLAGGED: {finding}")
    emit("passed" if report.passed else "flagged")
    return 0 if report.passed else 1
