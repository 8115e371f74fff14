"""`modelward keys generate`: create a signing key pair; `modelward keys rotate`: replace the
registry's signing key or its ledger key (a ledgered event signed by the old key);
`keys trust/untrust/trusted` (the registry's trusted uploader keys) live in `trust_cmds`."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json

PASSPHRASE_ENV = "MODELWARD_KEY_PASSPHRASE"


def register(subparsers: Any) -> None:
    keys = subparsers.add_parser("keys", help="create signing keys; trust uploader keys")
    verbs = keys.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    generate = verbs.add_parser("generate", help="write a private key and PATH.pub")
    generate.add_argument("--out", required=True, help="where to write the private key")
    generate.add_argument("--type", default="ecdsa-p256", choices=("ecdsa-p256", "ed25519"))
    generate.add_argument(
        "--passphrase",
        action="store_true",
        help=f"encrypt the key with a passphrase (from ${PASSPHRASE_ENV}, or asked for)",
    )
    add_json_flag(generate)
    generate.set_defaults(handler=_generate)
    rotate = verbs.add_parser(
        "rotate", help="replace the registry's signing key or its ledger key (admin)"
    )
    which = rotate.add_mutually_exclusive_group(required=True)
    which.add_argument("--registry", action="store_true", help="the registry's signing key")
    which.add_argument("--ledger", action="store_true", help="the ledger's key")
    add_json_flag(rotate)
    rotate.set_defaults(handler=_rotate)

    from modelward.interfaces.cli.trust_cmds import register_key_trust

    register_key_trust(verbs)


def read_passphrase(confirm: bool) -> bytes | None:
    import getpass
    import os
    import sys

    from modelward.errors import InputError

    value = os.environ.get(PASSPHRASE_ENV)
    if value is not None:
        if not value:
            raise InputError(f"${PASSPHRASE_ENV} is set but empty")
        return value.encode("utf-8")
    if not sys.stdin.isatty():
        raise InputError(f"no passphrase: set ${PASSPHRASE_ENV} or run on a terminal")
    first = getpass.getpass("Passphrase: ")
    if confirm and getpass.getpass("Passphrase again: ") != first:
        raise InputError("the passphrases do not match")
    if not first:
        raise InputError("the passphrase is empty")
    return first.encode("utf-8")


def _generate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.signing.keys import generate_private_key, key_hint, write_key_pair

    passphrase = read_passphrase(confirm=True) if args.passphrase else None
    key = generate_private_key(args.type)
    out = Path(args.out)
    pub = write_key_pair(out, key, passphrase)
    data = {
        "private_key": str(out),
        "public_key": str(pub),
        "type": args.type,
        "key_id": key_hint(key.public_key()),
    }
    if args.json:
        emit_json(data)
    else:
        emit(f"wrote {args.type} private key {out} and public key {pub}")
    return 0


def _rotate(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.key_rotation import rotate_key

    with registry_context() as context:
        result = rotate_key(context, "registry" if args.registry else "ledger")
    if args.json:
        emit_json(result.to_dict())
    else:
        emit(
            f"rotated the {result.which} key: {result.old_key_id} -> {result.new_key_id} "
            f"(ledger event #{result.seq}; the old public key is kept in keys/retired/)"
        )
    return 0
