"""The runtime commands against a server (`MODELWARD_URL` set): `canary start|status|judge|
watch|shadow`, `drift` and `alerts deliveries` through `modelward.Client`, rendered by the same
functions as embedded, with the same exit codes. `alerts webhook` stays on the registry's host:
a webhook holds its HMAC secret, which never travels to or from a client.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.errors import InputError
from modelward.interfaces.cli import canary_cmds, drift_cmds


def _client() -> Any:
    from modelward.interfaces.cli.remote import client

    return client()


def _start(args: argparse.Namespace) -> int:
    with _client() as c:
        data = c.canary_start(
            args.name,
            args.env,
            args.candidate,
            args.baseline,
            args.metric,
            alpha=args.alpha,
            min_samples=args.min_samples,
            warmup_s=args.warmup,
            watch_s=getattr(args, "watch", None),
        )
    return canary_cmds.render_start(args, data)


def _status(args: argparse.Namespace) -> int:
    with _client() as c:
        data = c.canary_status(args.name, args.env)
    return canary_cmds.render_status(args, data)


def _judge(args: argparse.Namespace) -> int:
    with _client() as c:
        data = c.canary_judge(args.name, args.env, act=args.act)
    return canary_cmds.render_judge(args, data)


def _watch(args: argparse.Namespace) -> int:
    canary_cmds.check_watch_args(args)
    with _client() as c:
        return canary_cmds.watch(args, lambda: c.canary_judge(args.name, args.env, act=True))


def _shadow(args: argparse.Namespace) -> int:
    with _client() as c:
        data = c.canary_shadow(args.name, args.env)
    return canary_cmds.render_shadow(args, data)


def _drift(args: argparse.Namespace) -> int:
    with _client() as c:
        data = c.drift(args.name, args.env, notify=args.notify)
    return drift_cmds.render_drift(args, data)


def _deliveries(args: argparse.Namespace) -> int:
    with _client() as c:
        rows = c.alert_deliveries(drift_cmds.delivery_limit(args))
    return drift_cmds.render_deliveries(args, rows)


def _webhook(args: argparse.Namespace) -> int:
    raise InputError(
        "`modelward alerts webhook` is not available against a server (MODELWARD_URL is set): "
        "a webhook holds its HMAC secret, which stays on the registry's host; run it there, "
        "or unset MODELWARD_URL for a local registry. `alerts deliveries` works remotely"
    )


HANDLERS = {
    "canary start": _start,
    "canary status": _status,
    "canary judge": _judge,
    "canary watch": _watch,
    "canary shadow": _shadow,
    "drift": _drift,
    "alerts deliveries": _deliveries,
    "alerts webhook": _webhook,
}
