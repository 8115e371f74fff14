"""Release commands: releases (history of an environment), releases show (one release's full
state), releases check (expired overrides), rollback (and rollback drills)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    releases = subparsers.add_parser(
        "releases",
        help="release history of ENV for a model; `releases show RELEASE_ID`; `releases check`",
        description="`releases ENV --model NAME` lists the releases of NAME in ENV; "
        "`releases show RELEASE_ID` shows one release's full state; `releases check [--model "
        "NAME]` reports (and records in the ledger) environments left on an expired override.",
    )
    releases.add_argument("words", nargs="+", metavar="ENV | show RELEASE_ID | check")
    releases.add_argument("--model", metavar="NAME")
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
    from modelward.errors import InputError

    verb, rest = args.words[0], args.words[1:]
    if verb == "show":
        if len(rest) != 1 or args.model:
            raise InputError("usage: modelward releases show RELEASE_ID [--json]")
        return _show(args, rest[0])
    if verb == "check":
        if rest:
            raise InputError("usage: modelward releases check [--model NAME] [--json]")
        return _check(args)
    if rest:
        raise InputError(f"unexpected arguments after {verb!r}: {' '.join(rest)}")
    if not args.model:
        raise InputError("usage: modelward releases ENV --model NAME [--json]")
    return _list(args, verb)


def _list(args: argparse.Namespace, environment: str) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    with registry_context() as context:
        rows = ReleaseService(context).list(args.model, environment)
    return render_releases(args, rows)


def render_releases(args: argparse.Namespace, rows: list[dict[str, Any]]) -> int:
    """Print a release history as `releases` does (embedded or remote)."""

    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        state = row["state"]
        mark = "*" if row["current"] else " "
        emit(
            f"{mark} {row['release_id']}\t{row['kind']}\tmodels:/{state['model']}/"
            f"{state['version']}\t{row['created_at']}\tby {row['actor']}\t"
            f"{'; '.join(_extras(row))}"
        )
        _override_lines(row)
    return 0


def _extras(row: dict[str, Any]) -> list[str]:
    state = row["state"]
    extras = []
    if state["prompt_templates"]:
        extras.append(f"templates {','.join(state['prompt_templates'])}")
    if state["policy_files"]:
        extras.append(f"policy files {','.join(state['policy_files'])}")
    if state["feature_flags"]:
        extras.append(
            "flags " + ",".join(f"{k}={json.dumps(v)}" for k, v in state["feature_flags"].items())
        )
    if row["restores_release_id"]:
        extras.append(f"restores {row['restores_release_id']}")
    return extras


def _override_lines(row: dict[str, Any]) -> None:
    if row["override"]:
        o = row["override"]
        emit(f"    OVERRIDE by {o['actor']} until {o['expires_at']}: {o['justification']}")
    if row.get("override_expired"):
        emit(
            f"    OVERRIDE EXPIRED at {row['override']['expires_at']}: nothing is promoted from "
            f"{row['state']['environment']} until a normal promotion or a rollback there"
        )


def _show(args: argparse.Namespace, release_id: str) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    with registry_context() as context:
        data = ReleaseService(context).show(release_id)
    if args.json:
        emit_json(data)
        return 0
    state = data["state"]
    current = " (current)" if data["current"] else ""
    emit(f"release {data['release_id']}{current}: {data['uri']} in {state['environment']}")
    emit(f"  kind {data['kind']}, by {data['actor']} at {data['created_at']}")
    emit(f"  bundle {state['bundle_digest']}")
    emit(f"  state digest {data['state_digest']}")
    for label, key in (("prompt template", "prompt_templates"), ("policy file", "policy_files")):
        for name, digest in state[key].items():
            emit(f"  {label} {name}\t{digest}")
    for name, value in state["feature_flags"].items():
        emit(f"  flag {name}={json.dumps(value)}")
    for label, key in (("follows", "previous_release_id"), ("restores", "restores_release_id")):
        if data[key]:
            emit(f"  {label} {data[key]}")
    _override_lines(data)
    return 0


def _check(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    with registry_context() as context:
        found = ReleaseService(context).check(args.model)
    if args.json:
        emit_json([e.to_dict() for e in found])
    elif not found:
        emit("no environment is on an expired override")
    else:
        for expired in found:
            emit(expired.message())
    return 1 if found else 0


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
    return render_rollback(args, data)


def render_rollback(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Print a rollback or a drill (shared with the remote CLI); 1 when a drill failed."""
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
