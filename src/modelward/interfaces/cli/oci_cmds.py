"""`modelward oci push|pull`: versions as CNCF ModelPack artifacts in OCI registries, with the
OMS signature, SLSA provenance, ML-BOM and evidence as OCI 1.1 referrers."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("oci", help="push versions to and pull them from OCI registries")
    verbs = parser.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    push = verbs.add_parser("push", help="push a version as a ModelPack artifact with referrers")
    push.add_argument("uri", metavar="URI", help="models:/NAME/N, models:/NAME@ALIAS, sha256:…")
    push.add_argument("target", metavar="REGISTRY/REPO:TAG")
    push.add_argument(
        "--evidence", metavar="FILE", help="attach this file as the evidence referrer"
    )
    push.add_argument(
        "--evidence-media-type",
        metavar="TYPE",
        help="the evidence layer's media type (default: by content, "
        "application/vnd.modelward.evidence.v1[+tar|+json|+zip|+gzip])",
    )
    _connection_flags(push)
    add_json_flag(push)
    push.set_defaults(handler=_push)

    pull = verbs.add_parser("pull", help="pull a ModelPack artifact by digest, verified")
    pull.add_argument("source", metavar="REGISTRY/REPO@DIGEST")
    pull.add_argument("--out", required=True, metavar="DIR", help="a new (or empty) folder")
    pull.add_argument(
        "--trust",
        action="append",
        default=[],
        metavar="KEYFILE",
        help="a public key the signature must verify with (repeatable; default: the local "
        "registry's key)",
    )
    pull.add_argument("--signature", metavar="SIG", help="where to write it (default: DIR.sig)")
    _connection_flags(pull)
    add_json_flag(pull)
    pull.set_defaults(handler=_pull)


def _connection_flags(parser: Any) -> None:
    parser.add_argument(
        "--plain-http",
        action="store_true",
        help="speak HTTP, not HTTPS (the default for loopback registries only)",
    )


def _factory(args: argparse.Namespace) -> Any:
    from modelward.storage.oci_client import OciClient, credentials_from_environment

    def make(registry: str) -> OciClient:
        return OciClient(
            registry,
            plain_http=True if args.plain_http else None,
            credentials=credentials_from_environment(registry),
        )

    return make


def _total_setter(bar: Any) -> Any:
    def set_total(total: int) -> None:
        bar.total = max(total, 1)

    return set_total


def _push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.interfaces.cli._context import registry_context
    from modelward.interfaces.cli._progress import ProgressBar
    from modelward.services.oci import OciService

    with registry_context() as context:
        service = OciService(_factory(args), context)
        bar = ProgressBar(0, "pushing")
        with bar as progress:
            result = service.push(
                args.uri,
                args.target,
                evidence=Path(args.evidence) if args.evidence else None,
                evidence_media_type=args.evidence_media_type,
                progress=progress,
                on_total=_total_setter(bar),
            )
    if args.json:
        emit_json(result.to_dict())
        return 0
    emit(f"pushed {result.uri} to {result.reference}")
    emit(f"  digest {result.digest}  ({result.layers} layers, {result.uploaded_bytes} bytes sent)")
    for referrer in result.referrers:
        emit(f"  {referrer.kind:<10} {referrer.digest}  {referrer.artifact_type}")
    emit(f"  referrers via {result.referrers_mode}")
    for note in result.skipped:
        print(f"modelward: not attached: {note}", file=sys.stderr)
    emit(f"pull with: modelward oci pull {result.pinned} --out DIR")
    return 0


def _pull(args: argparse.Namespace) -> int:
    from contextlib import ExitStack
    from pathlib import Path

    from modelward.interfaces.cli._progress import ProgressBar
    from modelward.services.oci import OciService
    from modelward.signing.keys import Verifier, load_public_key

    trusted = [Verifier(load_public_key(Path(p))) for p in args.trust]
    with ExitStack() as stack:
        context = None
        if not trusted:
            from modelward.errors import InputError, RegistryNotFoundError
            from modelward.interfaces.cli._context import registry_context

            try:
                context = stack.enter_context(registry_context())
            except RegistryNotFoundError as exc:
                raise InputError(
                    f"no trusted key: give --trust KEYFILE (the signer's public key), or pull "
                    f"where the registry is ({exc})"
                ) from exc
        service = OciService(_factory(args), context)
        bar = ProgressBar(0, "pulling")
        with bar as progress:
            result = service.pull(
                args.source,
                Path(args.out),
                trusted=trusted,
                signature_path=Path(args.signature) if args.signature else None,
                progress=progress,
                on_total=_total_setter(bar),
            )
    if args.json:
        emit_json(result.to_dict())
        return 0
    emit(f"pulled {result.reference} to {result.out} ({result.files} files, {result.bytes} bytes)")
    emit(f"  signature verified with key {result.key_id[:16]}… ({result.referrers_mode})")
    emit(f"  signature written to {result.signature}")
    return 0
