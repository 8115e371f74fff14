"""`modelward audit` verbs for offline proofs and witnesses: `key`, `verify-proof`,
`consistency`, `verify-consistency`, `witness add|list|remove`; and the `--witness` and
`--witnesses` options `audit checkpoint` and `audit verify` take (see audit.py)."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register_verbs(verbs: Any) -> None:
    key = verbs.add_parser("key", help="print the ledger's origin and signed-note verifier key")
    add_json_flag(key)
    key.set_defaults(handler=_key)

    proof = verbs.add_parser("verify-proof", help="check an exported tlog-proof offline")
    proof.add_argument("proof", metavar="PROOF")
    proof.add_argument("--key", required=True, metavar="LEDGER_PUB", help="vkey or PEM file")
    proof.add_argument("--checkpoint", metavar="CP", help="a signed checkpoint you trust")
    proof.add_argument(
        "--consistency", metavar="FILE", help="a consistency proof between the two checkpoints"
    )
    proof.add_argument("--origin", help="the log's origin (default: the key's name)")
    _witness_options(proof)
    add_json_flag(proof)
    proof.set_defaults(handler=_verify_proof)

    export = verbs.add_parser(
        "consistency", help="export a consistency proof between two checkpoints"
    )
    export.add_argument("old", metavar="OLD_CP")
    export.add_argument("new", nargs="?", metavar="NEW_CP", help="default: a fresh checkpoint")
    export.add_argument("--out", required=True)
    add_json_flag(export)
    export.set_defaults(handler=_consistency)

    check = verbs.add_parser("verify-consistency", help="check a consistency proof offline")
    check.add_argument("file", metavar="FILE")
    check.add_argument("--key", required=True, metavar="LEDGER_PUB", help="vkey or PEM file")
    check.add_argument("--origin")
    add_json_flag(check)
    check.set_defaults(handler=_verify_consistency)

    witness = verbs.add_parser("witness", help="the witnesses that cosign checkpoints")
    witness_verbs = witness.add_subparsers(dest="witness_verb", metavar="VERB")
    witness_verbs.required = True
    add = witness_verbs.add_parser("add", help="ask this witness to cosign checkpoints")
    add.add_argument("name", metavar="NAME")
    add.add_argument("url", metavar="URL", help="its URL prefix (…/add-checkpoint is appended)")
    add.add_argument("vkey", metavar="VKEY", help="its vkey (text or file)")
    add_json_flag(add)
    add.set_defaults(handler=_witness_add)
    listing = witness_verbs.add_parser("list", help="the configured witnesses")
    add_json_flag(listing)
    listing.set_defaults(handler=_witness_list)
    remove = witness_verbs.add_parser("remove", help="stop using a witness")
    remove.add_argument("name", metavar="NAME")
    add_json_flag(remove)
    remove.set_defaults(handler=_witness_remove)


def _witness_options(parser: Any) -> None:
    parser.add_argument(
        "--witness-key",
        action="append",
        default=[],
        metavar="VKEY",
        help="a trusted witness vkey (repeatable)",
    )
    parser.add_argument(
        "--witnesses", type=int, default=0, metavar="N", help="require N of them to have cosigned"
    )


def _context_and_service() -> Any:
    from modelward.services.audit import AuditService
    from modelward.services.context import open_registry

    context = open_registry()
    return context, AuditService(context.database, context.ledger_key, context.origin)


def _key(args: argparse.Namespace) -> int:
    context, service = _context_and_service()
    context.close()
    vkey = service.verifier.verifier_key()
    public = str(context.home / "keys" / "ledger.key.pub")
    if args.json:
        emit_json({"origin": service.origin, "vkey": vkey, "public_key_file": public})
    else:
        emit(vkey)
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._notekeys import log_key, read_text_file, witness_key
    from modelward.services.offline_proofs import verify_event_proof

    result = verify_event_proof(
        read_text_file(args.proof, "proof"),
        log_key(args.key, args.origin),
        checkpoint_text=read_text_file(args.checkpoint, "checkpoint") if args.checkpoint else None,
        consistency_text=(
            read_text_file(args.consistency, "consistency proof") if args.consistency else None
        ),
        origin=args.origin,
        witness_keys=[witness_key(value) for value in args.witness_key],
        witnesses_required=args.witnesses,
    )
    if args.json:
        emit_json(result.to_dict())
        return 0
    checkpoint = result.check.checkpoint
    event = result.event() or {}
    emit(
        f"verified: event #{result.check.index} ({event.get('action', '?')} "
        f"{event.get('subject', '?')}) is in log {checkpoint.origin} of size {checkpoint.size}"
    )
    if result.anchored == "embedded":
        emit("  anchored in the proof's own signed checkpoint (give --checkpoint to pin one)")
    elif result.anchored == "same":
        emit("  the proof's checkpoint is the given checkpoint")
    else:
        assert result.trusted is not None
        emit(
            f"  the proof's checkpoint and the given one (size {result.trusted.size}) are "
            "consistent: one history"
        )
    if result.witnesses is not None:
        emit(f"  {result.witnesses.summary()}")
    return 0


def _consistency(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._notekeys import read_text_file
    from modelward.interfaces.cli.audit import _write

    old = read_text_file(args.old, "checkpoint")
    new = read_text_file(args.new, "checkpoint") if args.new else None
    context, service = _context_and_service()
    try:
        text = service.consistency(old, new)
    finally:
        context.close()
    _write(args.out, text)
    from modelward.core.consistency import parse_consistency_proof

    old_size, new_size = parse_consistency_proof(text).sizes()
    if args.json:
        emit_json({"old_size": old_size, "new_size": new_size, "out": args.out})
    else:
        emit(f"consistency proof from size {old_size} to size {new_size} written to {args.out}")
    return 0


def _verify_consistency(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._notekeys import log_key, read_text_file
    from modelward.services.offline_proofs import verify_consistency_file

    old, new = verify_consistency_file(
        read_text_file(args.file, "consistency proof"), log_key(args.key, args.origin), args.origin
    )
    if args.json:
        emit_json({"ok": True, "old": old.to_dict(), "new": new.to_dict()})
    else:
        emit(f"consistent: log {new.origin} at size {new.size} extends its size {old.size}")
    return 0


def _config() -> Any:
    from modelward.services.context import home_dir, open_registry
    from modelward.storage.witness_config import WitnessConfigFile

    open_registry().close()  # the registry must exist
    return WitnessConfigFile(home_dir())


def _witness_add(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._notekeys import witness_key
    from modelward.storage.witness_config import WitnessEndpoint

    endpoint = WitnessEndpoint(args.name, args.url, witness_key(args.vkey))
    config = _config()
    config.add(endpoint)
    if args.json:
        emit_json(endpoint.to_dict())
    else:
        emit(f"witness {endpoint.name} at {endpoint.url} added ({config.path})")
    return 0


def _witness_list(args: argparse.Namespace) -> int:
    witnesses = _config().load()
    if args.json:
        emit_json([w.to_dict() for w in witnesses])
    else:
        for w in witnesses:
            emit(f"{w.name}\t{w.url}\t{w.key.vkey()}")
    return 0


def _witness_remove(args: argparse.Namespace) -> int:
    _config().remove(args.name)
    if args.json:
        emit_json({"removed": args.name})
    else:
        emit(f"witness {args.name} removed")
    return 0


def select_witnesses(context: Any, wanted: list[str], all_witnesses: bool) -> list[Any]:
    """The configured witnesses named (by name or URL) in `wanted`, or all of them."""
    from modelward.errors import InputError
    from modelward.storage.witness_config import WitnessConfigFile

    configured = WitnessConfigFile(context.home).load()
    if all_witnesses:
        if not configured:
            raise InputError("no witnesses are configured: `modelward audit witness add`")
        return list(configured)
    chosen = []
    for item in wanted:
        match = [w for w in configured if item in (w.name, w.url, w.url.rstrip("/"))]
        if not match:
            raise InputError(
                f"{item!r} is not a configured witness (its key is needed to check its "
                "cosignature): add it with `modelward audit witness add NAME URL VKEY`"
            )
        chosen.append(match[0])
    return chosen


def witnessed_checkpoint(args: argparse.Namespace, context: Any, service: Any) -> int:
    """`audit checkpoint --witness …`: issue, collect cosignatures, store, render."""
    from modelward.interfaces.witness_http import http_transport
    from modelward.services.witnessing import WitnessingService

    witnesses = select_witnesses(context, args.witness, args.all_witnesses)
    result = WitnessingService(context.database, service, http_transport()).checkpoint(witnesses)
    if args.out:
        from modelward.interfaces.cli.audit import _write

        _write(args.out, result.note)
    if args.json:
        emit_json({**result.to_dict(), "out": args.out})
    else:
        if not args.out:
            emit(result.note)
        for outcome in result.outcomes:
            state = "cosigned" if outcome.ok else f"NOT cosigned: {outcome.error}"
            emit(f"witness {outcome.name}: {state}")
    return 0 if result.ok else 1


def witness_problems(context: Any, service: Any, required: int) -> tuple[list[str], Any]:
    """`audit verify --witnesses N`: the problems, and the report to render."""
    from modelward.interfaces.witness_http import http_transport
    from modelward.services.witnessing import WitnessingService
    from modelward.storage.witness_config import WitnessConfigFile

    configured = WitnessConfigFile(context.home).load()
    report = WitnessingService(context.database, service, http_transport()).report(
        configured, required
    )
    return report.problems(), report
