"""Release commands: releases (history of an environment), rollback (and rollback drills)."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    releases = subparsers.add_parser("releases", help="the release history of ENV for a model")
    releases.add_argument("environment", metavar="ENV")
    releases.add_argument("--model", required=True, metavar="NAME")
    add_json_flag(releases)
    releases.set_defaults(handler=_releases)

    rollback = subparsers.add_parser("rollback", help="restore an earlier release of NAME in ENV")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--env", required=True, metavar="ENV")
    rollback.add_argument("--to", metavar="RELEASE_ID", help="default: the previous release")
    rollback.add_argument(
        "--drill",
        action="store_true",
        help="roll back and forward again, verify both byte for byte, record the result",
    )
    add_json_flag(rollback)
    rollback.set_defaults(handler=_rollback)


def _releases(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    with registry_context() as context:
        rows = ReleaseService(context).list(args.model, args.environment)
    return render_releases(args, rows)


def render_releases(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """Print a release history as `releases` does (embedded or remote)."""
    import json

    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        state = row["state"]
        mark = "*" if row["current"] else " "
        extras = []
        if state["prompt_templates"]:
            extras.append(f"templates {','.join(state['prompt_templates'])}")
        if state["policy_files"]:
            extras.append(f"policy files {','.join(state['policy_files'])}")
        if state["feature_flags"]:
            extras.append(
                "flags "
                + ",".join(f"{k}={json.dumps(v)}" for k, v in state["feature_flags"].items())
            )
        if row["restores_release_id"]:
            extras.append(f"restores {row['restores_release_id']}")
        emit(
            f"{mark} {row['release_id']}\t{row['kind']}\tmodels:/{state['model']}/"
            f"{state['version']}\t{row['created_at']}\tby {row['actor']}\t{'; '.join(extras)}"
        )
        if row["override"]:
            o = row["override"]
            emit(f"    OVERRIDE by {o['actor']} until {o['expires_at']}: {o['justification']}")
    return 0


def _rollback(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    if args.drill and args.to:
        raise InputError("--drill and --to do not go together")
    with registry_context() as context:
        service = ReleaseService(context)
        if args.drill:
            data = service.drill(args.name, args.env)
        else:
            data = service.rollback(args.name, args.env, args.to).to_dict()
    if args.json:
        emit_json(data)
    elif args.drill:
        verdict = "passed" if data["passed"] else "FAILED"
        emit(f"rollback drill of models:/{args.name} in {args.env}: {verdict}")
        for step in data["steps"]:
            emit(f"  {step['name']}: {'ok' if step['passed'] else 'MISMATCH'}")
            for difference in step["differences"]:
                emit(f"    {difference}")
    else:
        release = data["release"]
        emit(
            f"release {release['release_id']}: models:/{args.name} in {args.env} restored to "
            f"{release['restores_release_id']} (replacing {data['replaced_release_id']})"
        )
        for line in data["summary"]:
            emit(f"  {line}")
    if args.drill and not data["passed"]:
        return 1
    return 0
