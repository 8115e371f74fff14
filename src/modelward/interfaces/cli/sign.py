"""`modelward sign`: sign a model folder or file in the OpenSSF Model Signing format."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("sign", help="sign a model folder or file (OMS format)")
    parser.add_argument("model_path", metavar="MODEL_PATH")
    parser.add_argument("--key", required=True, help="PEM private key (ECDSA P-256 or Ed25519)")
    parser.add_argument(
        "--signature", help="where to write the signature (default: MODEL_PATH/../<name>.sig)"
    )
    parser.add_argument("--hash", default="sha256", choices=("sha256", "blake3"))
    parser.add_argument(
        "--ignore-paths",
        nargs="+",
        default=[],
        metavar="P",
        help="paths to leave out (relative to the working directory)",
    )
    parser.add_argument(
        "--allow-symlinks",
        action="store_true",
        help="follow symbolic links that stay inside the model folder",
    )
    add_json_flag(parser)
    parser.set_defaults(handler=_sign)


def _sign(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from modelward.interfaces.cli._progress import ProgressBar, total_size
    from modelward.interfaces.cli.keys import PASSPHRASE_ENV, read_passphrase
    from modelward.services.bundle_signing import sign_bundle
    from modelward.signing.keys import Signer, load_private_key

    key_path = Path(args.key)
    passphrase = None
    if PASSPHRASE_ENV in os.environ:
        passphrase = read_passphrase(confirm=False)
    key = load_private_key(key_path, passphrase)
    with ProgressBar(total_size(args.model_path), "hashing") as progress:
        result = sign_bundle(
            Path(args.model_path),
            Signer(key),
            signature_path=Path(args.signature) if args.signature else None,
            hash_type=args.hash,
            ignore_paths=args.ignore_paths,
            allow_symlinks=args.allow_symlinks,
            progress=progress,
        )
    if args.json:
        emit_json(
            {
                "signature": str(result.signature_path),
                "root_digest": result.manifest.root_digest,
                "files": len(result.manifest.files),
                "hash": args.hash,
                "key_id": result.bundle.public_key_hint,
            }
        )
    else:
        emit(
            f"signed {len(result.manifest.files)} files, root sha256:{result.manifest.root_digest}"
        )
        emit(f"signature written to {result.signature_path}")
    return 0
