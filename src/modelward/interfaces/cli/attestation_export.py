"""`modelward show URI --attestations --out DIR`: export a version's verified DSSE envelopes."""

from __future__ import annotations

import argparse

from modelward.interfaces.cli._output import emit, emit_json, warn


def export_attestations(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.attestation_export import AttestationExportService

    if not (args.attestations and args.out):
        raise InputError("--attestations and --out DIR go together")
    with registry_context() as context:
        result = AttestationExportService(context).export(args.uri, Path(args.out))
    if args.json:
        emit_json(result.to_dict())
    else:
        for entry in result.written:
            emit(f"wrote {args.out}/{entry['file']} ({entry['kind']}, {entry['key_name']} key)")
        for entry in result.skipped:
            warn(f"skipped attestation {entry['id']} ({entry['kind']}): {entry['reason']}")
        emit(f"{len(result.written)} verified attestation(s) of {result.uri} written to {args.out}")
    return 0
