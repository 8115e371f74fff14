"""`modelward evidence export|verify`: one self-contained evidence file per version or release,
and its offline check with only public keys (see docs/evidence.md)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json

MAX_BUNDLE = 256 * 1024 * 1024
ROLES = ("registry", "ledger", "uploader", "witness")


def register(subparsers: Any) -> None:
    evidence = subparsers.add_parser("evidence", help="export and verify evidence bundles")
    verbs = evidence.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    export = verbs.add_parser("export", help="write the evidence bundle of a version or release")
    export.add_argument("uri", nargs="?", metavar="URI", help="models:/NAME/N, @ALIAS or sha256:")
    export.add_argument("--release", metavar="ENV", help="the current release in ENV ...")
    export.add_argument("--model", metavar="NAME", help="... of this model")
    export.add_argument("--out", required=True, metavar="FILE")
    add_json_flag(export)
    export.set_defaults(handler=_export)

    verify = verbs.add_parser("verify", help="check an evidence bundle offline")
    verify.add_argument("file", metavar="FILE")
    verify.add_argument(
        "--trust",
        nargs="+",
        action="extend",
        default=[],
        required=True,
        metavar="[ROLE=]KEYFILE",
        help="public keys to trust; ROLE is registry, ledger, uploader or witness (default: "
        "registry.key.pub / ledger.key.pub by name, a vkey is a witness, other PEMs uploaders)",
    )
    verify.add_argument(
        "--witnesses", type=int, default=0, metavar="N", help="require N trusted witnesses"
    )
    verify.add_argument(
        "--allow-unsigned-approvals",
        action="store_true",
        help="accept approvals made before approvals were signed, on their ledger event alone",
    )
    verify.add_argument("--model", metavar="NAME", help="fail unless the bundle is of this model")
    verify.add_argument(
        "--uri", metavar="URI", help="fail unless it is of this version (models:/NAME/N, sha256:)"
    )
    verify.add_argument(
        "--environment", metavar="ENV", help="fail unless it is of the model's release in ENV"
    )
    add_json_flag(verify)
    verify.set_defaults(handler=_verify)


def _export(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.evidence_bundle import EvidenceBundleService

    if (args.uri is None) == (args.release is None):
        raise InputError("give a version URI or --release ENV --model NAME")
    if args.release is not None and not args.model:
        raise InputError("--release ENV needs --model NAME")
    if args.uri is not None and args.model:
        raise InputError("--model goes with --release, not with a URI")
    out = Path(args.out)
    with registry_context() as context:
        service = EvidenceBundleService(context)
        bundle = service.export(args.uri, model=args.model, environment=args.release)
    _write_new(out, bundle.data)
    if args.json:
        emit_json({**bundle.to_dict(), "out": str(out)})
    else:
        what = f"release {bundle.release_id} of " if bundle.release_id else ""
        emit(
            f"wrote {out}: evidence of {what}{bundle.uri}, {bundle.members} members, "
            f"{bundle.events} ledger events under a checkpoint of size {bundle.checkpoint_size}"
        )
        for item in bundle.omitted:
            emit(f"  left out (verify will fail on it): {item}")
    return 0


def _write_new(path: Path, data: bytes) -> None:
    import os

    from modelward.errors import PathError

    if path.exists() or path.is_symlink():
        raise PathError(f"{path}: already exists; choose a new file")
    temporary = path.with_name(f".{path.name}.partial")
    try:
        with open(temporary, "xb") as handle:
            handle.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        temporary.unlink(missing_ok=True)
        raise PathError(f"{path}: cannot write: {exc.strerror or exc}") from exc


def _verify(args: argparse.Namespace) -> int:
    from modelward.services.evidence_verify import EvidenceExpectation, verify_evidence_bundle

    expect = EvidenceExpectation(model=args.model, uri=args.uri, environment=args.environment)
    trust = _trust(args.trust, args.witnesses, args.allow_unsigned_approvals)
    report = verify_evidence_bundle(_read_bundle(args.file), trust, expect)
    if args.json:
        emit_json(report.to_dict())
    else:
        for check in report.checks:
            emit(check.line())
        failed = len(report.failures)
        subject = f"release {report.release} of {report.uri}" if report.release else report.uri
        as_of = report.as_of()
        emit(
            (
                f"verified: every link of the evidence of {subject} holds"
                if report.ok
                else f"NOT verified: {failed} of {len(report.checks)} links fail"
            )
            + (f" ({as_of})" if as_of else "")
        )
    return 0 if report.ok else 1


def _read_bundle(value: str) -> bytes:
    from modelward.errors import PathError

    path = Path(value)
    try:
        if not path.is_file():
            raise PathError(f"{value}: no such evidence file")
        if path.stat().st_size > MAX_BUNDLE:
            raise PathError(f"{value}: larger than {MAX_BUNDLE} bytes; not an evidence bundle")
        return path.read_bytes()
    except OSError as exc:
        raise PathError(f"{value}: cannot read: {exc.strerror or exc}") from exc


def _trust(values: list[str], required: int, allow_unsigned: bool) -> Any:
    """The keys of `--trust`, each sorted into its role (see the option's help)."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    from modelward.errors import InputError, KeyFormatError
    from modelward.interfaces.cli._notekeys import read_text_file, verifier_key_in, witness_key
    from modelward.services.evidence_verify import EvidenceTrust
    from modelward.signing.keys import Verifier, public_key_from_pem

    registry: list[Any] = []
    ledger: list[Any] = []
    uploaders: list[tuple[str, Any]] = []
    witnesses: list[Any] = []
    for value in values:
        role, sep, path = value.partition("=")
        if not sep or role not in ROLES:
            role, path = "", value
        text = read_text_file(path, "key")
        name = Path(path).name
        is_pem = text.lstrip().startswith("-----BEGIN")
        if not role:
            if name.startswith("registry.") and is_pem:
                role = "registry"
            elif name.startswith("ledger.") and is_pem:
                role = "ledger"
            else:
                role = "uploader" if is_pem else "witness"
        if role == "witness":
            witnesses.append(witness_key(path))
            continue
        if role == "ledger" and not is_pem:
            ledger.append(verifier_key_in(path, text))
            continue
        if not is_pem:
            raise KeyFormatError(f"{path}: a {role} key is a PEM public key file")
        key = public_key_from_pem(text.encode("utf-8"), path)
        if role == "ledger":
            if not isinstance(key, Ed25519PublicKey):
                raise KeyFormatError(f"{path}: a ledger key is Ed25519")
            ledger.append(key)
        elif role == "registry":
            registry.append(Verifier(key))
        else:
            uploaders.append((name.removesuffix(".pub"), Verifier(key)))
    if len(registry) != 1 or len(ledger) != 1:
        raise InputError(
            "--trust needs exactly one registry key and one ledger key (registry=FILE, "
            f"ledger=FILE); got {len(registry)} and {len(ledger)}"
        )
    if required < 0 or required > len(witnesses):
        raise InputError(
            f"--witnesses {required}: give at least that many witness keys (witness=VKEY)"
        )
    return EvidenceTrust(
        registry=registry[0],
        ledger=ledger[0],
        uploaders=tuple(uploaders),
        witnesses=tuple(witnesses),
        witnesses_required=required,
        allow_unsigned_approvals=allow_unsigned,
    )
