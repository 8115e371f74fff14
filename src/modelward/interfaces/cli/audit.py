"""`modelward audit`: the ledger — log, signed checkpoints, inclusion proofs, full verification.
Offline proof checks and witnesses live in audit_proofs.py."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    audit = subparsers.add_parser("audit", help="read, prove and verify the ledger")
    verbs = audit.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    log = verbs.add_parser("log", help="print ledger events")
    log.add_argument("--since", type=int, default=0, metavar="SEQ")
    log.add_argument("--limit", type=int, default=None)
    add_json_flag(log)
    log.set_defaults(handler=_log)
    checkpoint = verbs.add_parser("checkpoint", help="issue a signed checkpoint")
    checkpoint.add_argument("--out", help="write it to a file")
    checkpoint.add_argument(
        "--witness",
        action="append",
        default=[],
        metavar="NAME_OR_URL",
        help="ask this configured witness to cosign it (repeatable)",
    )
    checkpoint.add_argument(
        "--all-witnesses", action="store_true", help="ask every configured witness"
    )
    add_json_flag(checkpoint)
    checkpoint.set_defaults(handler=_checkpoint)
    proof = verbs.add_parser("proof", help="an inclusion proof of event SEQ (C2SP tlog-proof)")
    proof.add_argument("seq", type=int, metavar="SEQ")
    proof.add_argument("--out", required=True)
    add_json_flag(proof)
    proof.set_defaults(handler=_proof)
    verify = verbs.add_parser(
        "verify", help="recompute the ledger and check the registry against it"
    )
    verify.add_argument(
        "--since",
        metavar="CHECKPOINT_FILE",
        help="an older checkpoint: prove the log only grew since",
    )
    verify.add_argument(
        "--witnesses",
        type=int,
        default=None,
        metavar="N",
        help="fail unless N configured witnesses cosigned the latest checkpoint",
    )
    add_json_flag(verify)
    verify.set_defaults(handler=_verify)
    from modelward.interfaces.cli.audit_proofs import register_verbs

    register_verbs(verbs)


def _service() -> Any:
    from modelward.services.audit import AuditService
    from modelward.services.context import current_actor, open_registry

    context = open_registry()
    service = AuditService.for_registry(context, actor=current_actor())
    return context, service


def _log(args: argparse.Namespace) -> int:
    context, service = _service()
    try:
        events = service.log(args.since, args.limit)
    finally:
        context.close()
    if args.json:
        emit_json([e.to_dict() for e in events])
    else:
        for e in events:
            emit(f"#{e.seq}\t{e.recorded_at}\t{e.actor}\t{e.action}\t{e.subject}")
    return 0


def _write(path: str, text: str) -> None:
    from pathlib import Path

    from modelward.errors import PathError

    try:
        Path(path).write_text(text, encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def _checkpoint(args: argparse.Namespace) -> int:
    context, service = _service()
    if args.witness or args.all_witnesses:
        from modelward.interfaces.cli.audit_proofs import witnessed_checkpoint

        try:
            return witnessed_checkpoint(args, context, service)
        finally:
            context.close()
    try:
        note = service.checkpoint()
    finally:
        context.close()
    if args.out:
        _write(args.out, note)
    if args.json:
        emit_json({"checkpoint": note, "out": args.out})
    elif not args.out:
        emit(note)
    else:
        emit(f"checkpoint written to {args.out}")
    return 0


def _proof(args: argparse.Namespace) -> int:
    context, service = _service()
    try:
        text = service.proof(args.seq)
    finally:
        context.close()
    _write(args.out, text)
    if args.json:
        emit_json({"seq": args.seq, "out": args.out})
    else:
        emit(f"inclusion proof of event #{args.seq} written to {args.out}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.errors import PathError
    from modelward.services.datasets import governance_state_check
    from modelward.services.registry import registry_state_checks
    from modelward.services.release_checks import release_authority_check
    from modelward.services.settings import settings_state_checks
    from modelward.services.state_integrity import state_integrity_check

    since = None
    if args.since:
        try:
            since = Path(args.since).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise PathError(f"{args.since}: cannot read the checkpoint: {exc}") from exc
    context, service = _service()
    try:
        from modelward.services.attestation_verify import attestation_state_check
        from modelward.signing.keys import Verifier

        attestations = attestation_state_check(Verifier(context.signer.public_key))
        report = service.verify(
            since,
            state_checks=[
                registry_state_checks,
                settings_state_checks,
                state_integrity_check,
                governance_state_check,
                release_authority_check,
                attestations,
            ],
        )
        blob_problems = _blob_problems(context)
        witnessing = None
        witness_list: list[str] = []
        if args.witnesses is not None:
            from modelward.interfaces.cli.audit_proofs import witness_problems

            witness_list, witnessing = witness_problems(context, service, args.witnesses)
    finally:
        context.close()
    problems = list(report.problems) + blob_problems
    if args.json:
        extra = {} if witnessing is None else {"witnesses": witnessing.to_dict()}
        every = problems + witness_list
        emit_json({**report.to_dict(), **extra, "problems": every, "ok": not every})
        return 0 if not every else 1
    if problems:
        emit("the ledger or the registry was changed behind modelward's back:")
        for problem in problems:
            emit(f"  - {problem}")
    else:
        emit(f"ledger verified: {report.to_dict().get('size', '?')} events, registry state agrees")
    if witnessing is not None:
        names = ", ".join(c.name for c in witnessing.tally.vouched) or "none"
        emit(f"witnesses that vouched for the latest checkpoint (size {witnessing.size}): {names}")
        for problem in witness_list:
            emit(f"  - {problem}")
    problems += witness_list
    return 0 if not problems else 1


def _blob_problems(context: Any) -> list[str]:
    from modelward.services.registry import RegistryService

    service = RegistryService(context)
    problems: list[str] = []
    with context.database.read() as conn:
        from modelward.storage.metadata.registry_repository import RegistryRepository

        uris = [v.uri for v in RegistryRepository(conn).all_versions()]
    from modelward.errors import PermissionDeniedError

    for uri in uris:
        try:
            problems.extend(service.verify(uri).problems)
        except PermissionDeniedError as exc:  # the audit still reports what it can
            problems.append(f"{uri}: its files could not be checked: {exc}")
            break
    return problems
