"""The CLI against a server: when `MODELWARD_URL` is set, these commands call
`modelward.Client` (authenticating with `MODELWARD_TOKEN`) instead of opening a registry, with
the same output and exit codes. Commands that only make sense on the registry's own machine
(init, serve, tokens, oidc, fsck, …) refuse while `MODELWARD_URL` is set, rather than quietly
acting on a local registry. Imports no database code: remote start-up stays fast.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

from modelward.errors import InputError
from modelward.interfaces.cli._output import emit, emit_json

Handler = Callable[[argparse.Namespace], int]
# Commands that never touch a registry, which run locally whatever MODELWARD_URL says.
LOCAL_COMMANDS = frozenset({"keys", "sign", "verify", "scan"})
# Verbs of registry commands that are offline checks, likewise local.
LOCAL_VERBS = frozenset({"evidence verify"})


def remote_url() -> str | None:
    url = os.environ.get("MODELWARD_URL", "").strip()
    return url or None


def client() -> Any:
    from modelward.client import Client

    url = remote_url()
    assert url is not None
    return Client(url, os.environ.get("MODELWARD_TOKEN") or None)


def handler_for(args: argparse.Namespace) -> Handler | None:
    """The remote handler of the parsed command; None for local-only commands; InputError for
    registry commands not available against a server."""
    command = str(getattr(args, "command", ""))
    if command in LOCAL_COMMANDS:
        return None
    key = f"{command} {getattr(args, 'verb', '') or ''}".strip()
    if key in LOCAL_VERBS:
        return None
    handler = _HANDLERS.get(key)
    if handler is None:
        raise InputError(
            f"`modelward {key}` is not available against a server (MODELWARD_URL is set); "
            "run it on the registry's host, or unset MODELWARD_URL for a local registry"
        )
    return handler


def _push(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._progress import ProgressBar, total_size

    with client() as c, ProgressBar(total_size(args.model_path), "uploading") as progress:
        data = c.push(
            args.model_path,
            args.model,
            description=args.description,
            accept_malformed=args.accept_malformed,
            change=args.change,
            compat=args.compat,
            progress=progress,
            signature=args.signature,
            public_key=args.public_key,
            provenance=args.provenance,
            provenance_key=args.provenance_key,
        )
    if args.json:
        emit_json(data)
    elif data["created"]:
        emit(f"{data['uri']} sha256:{data['root_digest']}")
    else:
        emit(f"{data['uri']} sha256:{data['root_digest']} (already stored; nothing created)")
    return 0


def _pull(args: argparse.Namespace) -> int:
    with client() as c:
        record = c.pull(args.uri, args.out)
    if args.json:
        emit_json({**record, "out": args.out, "verified": True})
    else:
        emit(f"pulled {record['uri']} into {args.out}; every file and the signature verified")
    return 0


def _models_list(args: argparse.Namespace) -> int:
    with client() as c:
        rows = c.list_models()
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            emit(f"{row['name']}\t{row['versions']} versions\tlatest {row['latest'] or '-'}")
    return 0


def _versions_list(args: argparse.Namespace) -> int:
    with client() as c:
        rows = c.list_versions(args.name)
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            aliases = ",".join(row["aliases"])
            emit(
                f"{row['uri']}\tsha256:{row['root_digest'][:16]}…\t{row['created_at']}\t"
                f"{row['created_by']}\t{aliases}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli.registry_cmds import render_show

    with client() as c:
        data = c.show(args.uri)
    return render_show(args, data)


def _approve(args: argparse.Namespace) -> int:
    with client() as c:
        data = c.approve(args.uri, args.environment, comment=args.comment, sign_off=args.sign_off)
    if args.json:
        emit_json(data)
    else:
        sign_off = " with sign-off" if data["sign_off"] else ""
        emit(f"{data['reviewer']} approved {data['uri']} for {data['environment']}{sign_off}")
    return 0


def _promote(args: argparse.Namespace) -> int:
    from modelward.core.policy import Decision
    from modelward.interfaces.cli.gate_cmds import render_decision

    with client() as c:
        data = c.promote(
            args.uri,
            args.to,
            flag_texts=args.flag,
            risk_tier=args.risk_tier,
            if_current=args.if_current,
            prompt_templates=args.prompt_template,
            policy_files=args.policy_file,
            carry=not args.no_carry,
        )
    if args.json:
        emit_json(data)
    else:
        from modelward.interfaces.cli.gate_cmds import render_carried_dict

        render_decision(Decision.from_dict(data["decision"]), uri=data["uri"])
        if data["release"] is not None:
            release_id = data["release"]["release_id"]
            emit(f"release {release_id}: {data['uri']} is now in {args.to}")
            render_carried_dict(data.get("carried"), args.no_carry)
    return 0 if data["allowed"] else 1


def _decisions(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli.gate_cmds import render_decisions

    with client() as c:
        rows = c.decisions(args.uri)
    return render_decisions(args, rows)


def _releases(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli.releases_cmds import render_releases

    with client() as c:
        verb, rest = args.words[0], args.words[1:]
        if verb in ("show", "check") or rest or not args.model:
            raise InputError(
                "over a server only `modelward releases ENV --model NAME` is available"
            )
        rows = c.releases(args.model, verb)
    return render_releases(args, rows)


def _rollback(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli.releases_cmds import render_rollback

    if args.drill and args.to:
        raise InputError("--drill and --to do not go together")
    with client() as c:
        if args.drill:
            data = c.rollback_drill(args.name, args.env)
        else:
            data = c.rollback(args.name, args.env, args.to)
    return render_rollback(args, data)


def _audit_log(args: argparse.Namespace) -> int:
    with client() as c:
        events = c.audit_log(args.since, args.limit)
    if args.json:
        emit_json(events)
    else:
        for e in events:
            emit(f"#{e['seq']}\t{e['recorded_at']}\t{e['actor']}\t{e['action']}\t{e['subject']}")
    return 0


def _write(path: str, text: str) -> None:
    from pathlib import Path

    from modelward.errors import PathError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def _audit_proof(args: argparse.Namespace) -> int:
    with client() as c:
        text = c.audit_proof(args.seq)
    _write(args.out, text)
    if args.json:
        emit_json({"seq": args.seq, "out": args.out})
    else:
        emit(f"inclusion proof of event #{args.seq} written to {args.out}")
    return 0


def _audit_checkpoint(args: argparse.Namespace) -> int:
    with client() as c:
        note = c.audit_checkpoint()
    if args.out:
        _write(args.out, note)
    if args.json:
        emit_json({"checkpoint": note, "out": args.out})
    elif not args.out:
        emit(note)
    else:
        emit(f"checkpoint written to {args.out}")
    return 0


def _whoami(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli.users_cmds import render_whoami

    with client() as c:
        data = c.whoami()
    return render_whoami(args, data)


def _users_list(args: argparse.Namespace) -> int:
    with client() as c:
        users = c.users()
    if args.json:
        emit_json(users)
    else:
        for user in users:
            emit(f"{user['name']}\t{user['role']}")
    return 0


def _users_add(args: argparse.Namespace) -> int:
    with client() as c:
        user = c.add_user(args.name, args.role)
    if args.json:
        emit_json(user)
    else:
        emit(f"{user['name']} is now a {user['role']}")
    return 0


_HANDLERS: dict[str, Handler] = {
    "push": _push,
    "pull": _pull,
    "show": _show,
    "models list": _models_list,
    "versions list": _versions_list,
    "approve": _approve,
    "promote": _promote,
    "decisions": _decisions,
    "releases": _releases,
    "rollback": _rollback,
    "audit log": _audit_log,
    "audit proof": _audit_proof,
    "audit checkpoint": _audit_checkpoint,
    "whoami": _whoami,
    "users list": _users_list,
    "users add": _users_add,
}


def _runtime_handlers() -> dict[str, Handler]:
    from modelward.interfaces.cli.remote_runtime import HANDLERS

    return dict(HANDLERS)


_HANDLERS.update(_runtime_handlers())
