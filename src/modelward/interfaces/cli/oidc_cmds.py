"""`modelward oidc`: trust an OIDC issuer's JWTs, and map a CI job's claims to a service user.

Run on the registry itself (embedded mode, as an admin): issuers and mappings are registry state.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    oidc = subparsers.add_parser("oidc", help="OIDC issuers and claim mappings (admin)")
    verbs = oidc.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    add = verbs.add_parser("add", help="trust JWTs from ISSUER for AUDIENCE")
    add.add_argument("issuer", metavar="ISSUER", help="the issuer URL (the JWTs' iss)")
    add.add_argument("--audience", required=True, metavar="AUD")
    add.add_argument("--jwks-file", metavar="FILE", help="the issuer's JWKS, for offline use")
    add.add_argument("--jwks-url", metavar="URL", help="where the issuer publishes its JWKS")
    add.add_argument("--algorithms", default="RS256,ES256", metavar="ALG,ALG")
    add_json_flag(add)
    add.set_defaults(handler=_add)
    mapping = verbs.add_parser("map", help="map ISSUER's tokens with these claims to a user")
    mapping.add_argument("issuer", metavar="ISSUER")
    mapping.add_argument(
        "--claim", action="append", default=[], required=True, metavar="NAME=VALUE"
    )
    mapping.add_argument("--as", dest="user", required=True, metavar="SERVICE_USER")
    add_json_flag(mapping)
    mapping.set_defaults(handler=_map)
    listing = verbs.add_parser("list", help="issuers and their mappings")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)


def _add(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.errors import PathError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.oidc import OidcService, parse_algorithms

    jwks_text = None
    if args.jwks_file:
        try:
            jwks_text = Path(args.jwks_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PathError(f"{args.jwks_file}: cannot read: {exc}") from exc
    algorithms = parse_algorithms(args.algorithms)
    with registry_context() as context:
        record = OidcService(context).add_issuer(
            args.issuer,
            args.audience,
            jwks_url=args.jwks_url,
            jwks_text=jwks_text,
            algorithms=algorithms,
        )
    if args.json:
        emit_json(record.to_dict())
    else:
        emit(f"trusting {record.issuer} for audience {record.audience}")
    return 0


def _map(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.oidc import OidcService

    claims: dict[str, str] = {}
    for text in args.claim:
        key, sep, value = text.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--claim {text!r} is not NAME=VALUE")
        claims[key.strip()] = value
    with registry_context() as context:
        record = OidcService(context).map_claims(args.issuer, claims, args.user)
    if args.json:
        emit_json(record.to_dict())
    else:
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(record.claims.items()))
        emit(f"tokens of {record.issuer} with {wanted} act as {record.user}")
    return 0


def _list(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.oidc import OidcService

    with registry_context() as context:
        views = OidcService(context).list()
    if args.json:
        emit_json([v.to_dict() for v in views])
        return 0
    for view in views:
        source = view.issuer.jwks_url or "JWKS file"
        emit(f"{view.issuer.issuer}\taudience {view.issuer.audience}\t{source}")
        for m in view.mappings:
            wanted = ", ".join(f"{k}={v}" for k, v in sorted(m.claims.items()))
            emit(f"  {wanted} -> {m.user}")
    return 0
