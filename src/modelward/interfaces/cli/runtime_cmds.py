"""Runtime commands: `fetch URI DIR` (verified load into the cache DIR, printing the path) and
`telemetry ingest FILE...` / `telemetry summary NAME --env ENV` (embedded OTLP JSON files in,
signals per release and window out)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    fetch = subparsers.add_parser(
        "fetch",
        help="verify and cache a version's bundle in DIR; print the path to open",
        description="Resolve URI (models:/NAME/N, models:/NAME@ENV), verify every byte, the "
        "registry signature and the ledger inclusion (and with --env, that it is ENV's current "
        "release), and cache it in DIR by root digest. Prints the path to open.",
    )
    fetch.add_argument("uri", metavar="URI")
    fetch.add_argument("dir", metavar="DIR", type=Path, help="the cache folder")
    fetch.add_argument("--env", metavar="ENV", help="require ENV's current release")
    fetch.add_argument("--strict", action="store_true", help="re-hash a cached bundle")
    add_json_flag(fetch)
    fetch.set_defaults(handler=_fetch)

    telemetry = subparsers.add_parser("telemetry", help="serving telemetry: ingest, summary")
    verbs = telemetry.add_subparsers(dest="verb", required=True, metavar="VERB")
    ingest = verbs.add_parser("ingest", help="ingest OTLP JSON trace or metrics files")
    ingest.add_argument("files", nargs="+", type=Path, metavar="FILE")
    ingest.add_argument("--store-content", action="store_true", help="keep prompt/output text")
    ingest.add_argument(
        "--refusals", action="store_true", help="classify outputs for refusals (keyword list)"
    )
    add_json_flag(ingest)
    ingest.set_defaults(handler=_ingest)
    summary = verbs.add_parser("summary", help="signals per release and time window")
    summary.add_argument("name", metavar="NAME")
    summary.add_argument("--env", metavar="ENV")
    summary.add_argument("--release", metavar="RELEASE_ID")
    summary.add_argument("--window", type=float, default=300.0, metavar="SECONDS")
    summary.add_argument("--since-ns", type=int)
    summary.add_argument("--until-ns", type=int)
    add_json_flag(summary)
    summary.set_defaults(handler=_summary)


def _fetch(args: argparse.Namespace) -> int:
    from modelward.runtime.loading import load_bundle

    loaded = load_bundle(args.uri, cache_dir=args.dir, environment=args.env, strict=args.strict)
    if args.json:
        emit_json(loaded.to_dict())
    else:
        emit(str(loaded.path))
    return 0


def _ingest(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.runtime.genai import keyword_refusal_classifier
    from modelward.services.telemetry import TelemetryService

    with registry_context() as context:
        result = TelemetryService(
            context,
            store_content=args.store_content,
            refusal_classifier=keyword_refusal_classifier if args.refusals else None,
        ).ingest_files(args.files)
    if args.json:
        emit_json(result.to_dict())
        return 0
    emit(
        f"{result.accepted} accepted, {result.duplicates} duplicates, {result.skipped} not model "
        f"calls, {result.rejected} dropped (of {result.spans} spans)"
    )
    for reason, count in sorted(result.dropped.items()):
        emit(f"  dropped {count}: {reason}")
    if result.metrics is not None:
        m = result.metrics
        emit(
            f"{m.accepted} metric points accepted, {m.duplicates} duplicates, {m.skipped} of "
            f"other metrics, {m.rejected} dropped (of {m.points} points)"
        )
        for reason, count in sorted(m.dropped.items()):
            emit(f"  dropped {count}: {reason}")
    return 0


def _summary(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.telemetry import TelemetryService

    with registry_context() as context:
        rows = TelemetryService(context).summary(
            args.name,
            args.env,
            window_s=args.window,
            release_id=args.release,
            since_ns=args.since_ns,
            until_ns=args.until_ns,
        )
    if args.json:
        emit_json([row.to_dict() for row in rows])
        return 0
    for row in rows:
        latency = (
            f"p50 {row.latency_s.p50:.3f}s p95 {row.latency_s.p95:.3f}s" if row.latency_s else "-"
        )
        errors = "-" if row.error_rate is None else f"{row.error_rate:.1%}"
        emit(
            f"{row.window_start_ns}\t{row.release_id or '-'}\tv{row.version}\t{row.requests} req\t"
            f"errors {errors}\tlatency {latency}\tfinish {row.finish_reasons}"
        )
        for signal, m in row.metrics.items():
            p95 = "-" if m.p95 is None else f"{m.p95:.4g}"
            emit(f"  {signal}\tn {m.count}\tmean {m.mean:.4g}\tp95 {p95}")
    return 0
