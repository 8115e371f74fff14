"""`modelward tokens`: create (printed once), list and revoke the API tokens a server accepts.

Run on the registry itself (embedded mode, as an admin): tokens are registry state.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json, warn

DEFAULT_TOKEN_LIFETIME = "90d"  # tokens expire unless made with --expires never


def register(subparsers: Any) -> None:
    tokens = subparsers.add_parser("tokens", help="API tokens for `modelward serve` (admin)")
    verbs = tokens.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    create = verbs.add_parser("create", help="create a token for USER; printed once")
    create.add_argument("--user", required=True, metavar="NAME")
    create.add_argument(
        "--scope",
        action="append",
        default=[],
        metavar="ACTION",
        help="limit the token to this action (repeatable; default: what the role allows)",
    )
    create.add_argument("--model", metavar="PATTERN", help="limit to models matching PATTERN")
    create.add_argument(
        "--expires", metavar="DURATION", help="e.g. 30m, 12h, 90d, or 'never' (default: 90d)"
    )
    add_json_flag(create)
    create.set_defaults(handler=_create)
    listing = verbs.add_parser("list", help="every token (never their secrets)")
    listing.add_argument("--user", metavar="NAME")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)
    revoke = verbs.add_parser("revoke", help="revoke token ID, or every token of --user")
    revoke.add_argument("id", nargs="?", metavar="ID")
    revoke.add_argument("--user", metavar="NAME")
    revoke.add_argument("--all", action="store_true", help="with --user: all of their tokens")
    add_json_flag(revoke)
    revoke.set_defaults(handler=_revoke)


def _create(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.gate_config import parse_duration
    from modelward.services.tokens import TokenService

    expires = (
        None
        if args.expires == "never"
        else parse_duration(args.expires or DEFAULT_TOKEN_LIFETIME, "--expires")
    )
    with registry_context() as context:
        created = TokenService(context).create(args.user, args.scope, args.model, expires)
    if args.json:
        emit_json(created.to_dict())
    else:
        emit(created.token)
        warn(
            f"token {created.record.id} for {created.record.user}"
            f"{' until ' + created.record.expires_at if created.record.expires_at else ''}: "
            "store it now, it is not shown again"
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.tokens import TokenService

    with registry_context() as context:
        records = TokenService(context).list(args.user)
    if args.json:
        emit_json([r.to_dict() for r in records])
        return 0
    for r in records:
        state = f"revoked {r.revoked_at}" if r.revoked_at else f"expires {r.expires_at or 'never'}"
        scopes = ",".join(r.scopes) or "role"
        emit(
            f"{r.id}\t{r.user}\t{scopes}\t{r.model_pattern or '*'}\t{state}\t"
            f"last used {r.last_used_at or 'never'}"
        )
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.tokens import TokenService

    if (args.id is None) == (args.user is None) or (args.user is not None and not args.all):
        raise InputError("give a token ID, or --user NAME --all")
    with registry_context() as context:
        service = TokenService(context)
        ids = service.revoke(args.id) if args.id else service.revoke_all(args.user)
    if args.json:
        emit_json({"revoked": ids})
    else:
        emit(f"revoked {len(ids)} token(s){': ' + ', '.join(ids) if ids else ''}")
    return 0
