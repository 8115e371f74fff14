"""`modelward verify`: check a model folder or file against its OMS signature.

Exit 0 verified, 1 not verified (named differences, wrong key, bad signature), 2 input error.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a model folder against its signature, or a registry version (URI)",
    )
    parser.add_argument("model_path", metavar="MODEL_PATH|URI")
    trust = parser.add_mutually_exclusive_group()
    trust.add_argument("--public-key", help="PEM public key of the signer")
    trust.add_argument(
        "--certificate-chain",
        nargs="+",
        metavar="CA_PEM",
        help="PEM files of the trusted root (and intermediate) certificates",
    )
    parser.add_argument("--signature", help="signature file (default: MODEL_PATH/../<name>.sig)")
    parser.add_argument(
        "--ignore-paths",
        nargs="+",
        default=[],
        metavar="P",
        help="paths to leave out (relative to the working directory)",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_verify)


def _verify(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.core.names import is_uri
    from modelward.errors import InputError, VerificationError

    if is_uri(args.model_path):
        return _verify_registry_version(args)
    if not args.public_key and not args.certificate_chain:
        raise InputError("verify MODEL_PATH needs --public-key or --certificate-chain")
    from modelward.interfaces.cli._progress import ProgressBar, total_size
    from modelward.services.bundle_signing import verify_bundle
    from modelward.signing.keys import Verifier, load_public_key

    verifier = Verifier(load_public_key(Path(args.public_key))) if args.public_key else None
    chain = [Path(p) for p in args.certificate_chain or ()]
    try:
        with ProgressBar(total_size(args.model_path), "hashing") as progress:
            result = verify_bundle(
                Path(args.model_path),
                public_key=verifier,
                certificate_chain=chain,
                signature_path=Path(args.signature) if args.signature else None,
                ignore_paths=args.ignore_paths,
                progress=progress,
            )
    except VerificationError as exc:
        if not args.json:
            raise
        diff = getattr(exc, "diff", None)
        emit_json(
            {
                "verified": False,
                "reason": str(exc),
                "diff": diff.to_dict() if diff is not None else None,
            }
        )
        return 1
    if args.json:
        emit_json(
            {
                "verified": True,
                "root_digest": result.manifest.root_digest,
                "files": len(result.manifest.files),
                "signer": result.signer,
            }
        )
    else:
        emit(
            f"verified: {len(result.manifest.files)} files, root sha256:"
            f"{result.manifest.root_digest}, signed by {result.signer}"
        )
    return 0


def _verify_registry_version(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        report = service.verify(args.model_path)
    if args.json:
        emit_json({**report.details, "verified": report.ok, "problems": report.problems})
    elif report.ok:
        emit(
            f"verified: {report.details['uri']} ({report.details.get('files')} files re-hashed, "
            "registry signature and ledger inclusion checked)"
        )
    else:
        emit(f"NOT verified: {report.details['uri']}")
        for problem in report.problems:
            emit(f"  - {problem}")
    return 0 if report.ok else 1
