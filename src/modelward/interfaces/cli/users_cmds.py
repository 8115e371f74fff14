"""User commands: users add, users list, users grant, users revoke-grant, users grants,
whoami."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    users = subparsers.add_parser("users", help="the registry's users and their roles")
    verbs = users.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    add = verbs.add_parser("add", help="add a user, or change a user's role (admin only)")
    add.add_argument("name", metavar="NAME")
    add.add_argument(
        "--role",
        required=True,
        help="admin, trainer, reviewer, releaser, auditor or viewer",
    )
    add_json_flag(add)
    add.set_defaults(handler=_add)
    listing = verbs.add_parser("list", help="every user and role")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)
    for verb, helptext, handler in (
        ("grant", "give a user a role on the models matching a pattern (admin only)", _grant),
        ("revoke-grant", "take a model-scoped role grant back (admin only)", _revoke_grant),
    ):
        cmd = verbs.add_parser(verb, help=helptext)
        cmd.add_argument("name", metavar="NAME")
        cmd.add_argument("--role", required=True, help="trainer, reviewer, releaser or auditor")
        cmd.add_argument(
            "--model",
            required=True,
            metavar="PATTERN",
            help="a model name or a pattern such as 'team-a-*'",
        )
        add_json_flag(cmd)
        cmd.set_defaults(handler=handler)
    grants = verbs.add_parser("grants", help="every model-scoped role grant")
    add_json_flag(grants)
    grants.set_defaults(handler=_grants)

    whoami = subparsers.add_parser("whoami", help="who you act as, your role and what it allows")
    add_json_flag(whoami)
    whoami.set_defaults(handler=_whoami)


def _add(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.users import UserService

    with registry_context() as context:
        user = UserService(context).add(args.name, args.role)
    if args.json:
        emit_json(user.to_dict())
    else:
        emit(f"{user.name} is now a {user.role}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.users import UserService

    with registry_context() as context:
        users = UserService(context).list()
    if args.json:
        emit_json([u.to_dict() for u in users])
    else:
        for user in users:
            emit(f"{user.name}\t{user.role}")
    return 0


def _grant(args: argparse.Namespace) -> int:
    return _change_grant(args, add=True)


def _revoke_grant(args: argparse.Namespace) -> int:
    return _change_grant(args, add=False)


def _change_grant(args: argparse.Namespace, *, add: bool) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.users import UserService

    with registry_context() as context:
        service = UserService(context)
        change = service.grant if add else service.revoke_grant
        grants = change(args.name, args.role, args.model)
    if args.json:
        emit_json([g.to_dict() for g in grants])
    else:
        verb = "now has" if add else "no longer has"
        emit(f"{args.name} {verb} the role {args.role} on models matching {args.model!r}")
    return 0


def _grants(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.users import UserService

    with registry_context() as context:
        grants = UserService(context).grants()
    if args.json:
        emit_json([g.to_dict() for g in grants])
    else:
        for grant in grants:
            emit(f"{grant.user}\t{grant.role.value}\t{grant.models}")
    return 0


def _whoami(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.users import UserService

    with registry_context() as context:
        data = UserService(context).whoami()
    return render_whoami(args, data)


def render_whoami(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Print who the caller acts as (embedded or remote)."""
    if args.json:
        emit_json(data)
    elif data["known"]:
        emit(f"{data['actor']} ({data['role']}): may {', '.join(data['may'])}")
    else:
        emit(f"{data['actor']} is not a user of this registry")
    return 0
