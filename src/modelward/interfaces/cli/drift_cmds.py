"""Drift and alert commands: `drift NAME --env ENV`, `alerts webhook add|list`,
`alerts deliveries`. `drift` exits 1 when some metric drifted past its threshold."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    drift = subparsers.add_parser(
        "drift",
        help="latency, output tokens and finish reasons of ENV's release against its baseline",
    )
    drift.add_argument("name", metavar="NAME")
    drift.add_argument("--env", required=True, metavar="ENV")
    drift.add_argument("--notify", action="store_true", help="send an alert when it drifted")
    add_json_flag(drift)
    drift.set_defaults(handler=_drift)

    alerts = subparsers.add_parser("alerts", help="alert webhooks (admin) and their deliveries")
    verbs = alerts.add_subparsers(dest="verb", required=True, metavar="VERB")
    webhook = verbs.add_parser("webhook", help="add or list webhooks")
    webhook.add_argument("action", choices=("add", "list"))
    webhook.add_argument("name", nargs="?", metavar="NAME")
    webhook.add_argument("--url")
    webhook.add_argument("--key-id")
    webhook.add_argument(
        "--secret-file",
        type=Path,
        help="the HMAC key (at least 16 bytes): the file's bytes, leading and trailing whitespace "
        "(such as the final newline) removed",
    )
    webhook.add_argument("--disable", action="store_true", help="store it turned off")
    add_json_flag(webhook)
    webhook.set_defaults(handler=_webhook)
    deliveries = verbs.add_parser("deliveries", help="the latest delivery attempts")
    deliveries.add_argument("--limit", type=int, default=50)
    add_json_flag(deliveries)
    deliveries.set_defaults(handler=_deliveries)


def _drift(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.canary import telemetry_source
    from modelward.services.drift import DriftService

    with registry_context() as context:
        data = DriftService(context, source=telemetry_source(context)).report(
            args.name, args.env, notify=args.notify
        )
    return render_drift(args, data)


def render_drift(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
    else:
        emit(
            f"models:/{args.name} in {args.env}: release {data['release_id']} against "
            f"{data['baseline_release_id'] or 'no earlier release'}"
        )
        for m in data["metrics"]:
            stats = ", ".join(
                f"{k} {m[k]:.3f}" for k in ("psi", "js", "wasserstein_relative") if m[k] is not None
            )
            emit(f"  {m['name']:<14}{m['status']:<13}n {m['n_baseline']}/{m['n_current']} {stats}")
    return 1 if data["drift"] else 0


def _webhook(args: argparse.Namespace) -> int:
    from modelward.errors import InputError, PathError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.alerts import AlertService

    with registry_context() as context:
        service = AlertService(context)
        if args.action == "list":
            rows = service.webhooks()
            if args.json:
                emit_json(rows)
            for row in [] if args.json else rows:
                mark = "" if row["problem"] is None else f"  UNTRUSTED: {row['problem']}"
                state = "enabled" if row["enabled"] else "disabled"
                emit(f"{row['name']}\t{row['url']}\tkey {row['key_id']}\t{state}{mark}")
            return 0
        if not (args.name and args.url and args.key_id and args.secret_file):
            raise InputError("usage: alerts webhook add NAME --url URL --key-id ID --secret-file F")
        try:
            secret = args.secret_file.read_bytes().strip()
        except OSError as exc:
            raise PathError(f"{args.secret_file}: cannot read the secret ({exc})") from exc
        data = service.add_webhook(args.name, args.url, args.key_id, secret, not args.disable)
    if args.json:
        emit_json(data)
    else:
        emit(f"webhook {data['name']} -> {data['url']} (key {data['key_id']})")
    return 0


def _deliveries(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.alerts import AlertService

    with registry_context() as context:
        rows = AlertService(context).deliveries(delivery_limit(args))
    return render_deliveries(args, rows)


def render_deliveries(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    if args.json:
        emit_json(rows)
    else:
        for r in rows:
            emit(
                f"{r['at']}\t{r['event']}\t{r['delivery_id']}\tattempt {r['attempt']}\t"
                f"{r['outcome']}\t{r['http_status']}"
            )
    return 0


def delivery_limit(args: argparse.Namespace) -> int:
    """`--limit`, refused (exit 2) unless 1 to 1000."""
    from modelward.errors import InputError

    limit = int(args.limit)
    if not 1 <= limit <= 1000:
        raise InputError(f"--limit must be from 1 to 1000, not {limit}")
    return limit
