"""`modelward datasets`: add, list, show, prove, verify-proof, set-consent, set-retention."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    datasets = subparsers.add_parser("datasets", help="content-addressed datasets and governance")
    verbs = datasets.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True

    add = verbs.add_parser("add", help="store a file or folder as the next version of NAME")
    add.add_argument("path", metavar="PATH")
    add.add_argument("--name", required=True)
    add.add_argument("--license", required=True, metavar="SPDX_ID")
    add.add_argument("--source", required=True, metavar="URL_OR_TEXT")
    add.add_argument(
        "--consent", default="unknown", choices=("granted", "not-required", "unknown", "withdrawn")
    )
    add.add_argument("--retention-until", metavar="YYYY-MM-DD")
    add.add_argument("--owner")
    add.add_argument("--labeling-qa", metavar="FILE", help="a labelling-QA report to keep")
    add_json_flag(add)
    add.set_defaults(handler=_add)

    listing = verbs.add_parser("list", help="dataset versions with their eligibility")
    listing.add_argument("name", nargs="?", metavar="NAME")
    add_json_flag(listing)
    listing.set_defaults(handler=_list)

    show = verbs.add_parser("show", help="a dataset version's files, governance and users")
    show.add_argument("uri", metavar="datasets:/NAME/N")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    prove = verbs.add_parser("prove", help="prove a record is (or is not) in a dataset version")
    prove.add_argument("uri", metavar="datasets:/NAME/N")
    which = prove.add_mutually_exclusive_group(required=True)
    which.add_argument("--record", metavar="FILE:LINE_OR_ROW")
    which.add_argument("--absent", metavar="SHA256", help="a record hash that must be absent")
    prove.add_argument("--file", help="with --absent: only this file")
    prove.add_argument("--out", metavar="FILE", help="also write the proof as JSON")
    add_json_flag(prove)
    prove.set_defaults(handler=_prove)

    check = verbs.add_parser("verify-proof", help="check a `datasets prove` proof offline")
    check.add_argument("proof", metavar="PROOF")
    trusted = check.add_mutually_exclusive_group(required=True)
    trusted.add_argument("--root", metavar="HEX", help="the file's trusted record root")
    trusted.add_argument("--sorted-root", metavar="HEX", help="its sorted root (absence)")
    trusted.add_argument("--manifest", metavar="FILE", help="a dataset manifest JSON")
    check.add_argument("--count", type=int, help="with --root/--sorted-root: the record count")
    check.add_argument("--manifest-digest", metavar="sha256:HEX", help="pin the manifest")
    add_json_flag(check)
    check.set_defaults(handler=_verify_proof)

    consent = verbs.add_parser("set-consent", help="record a consent change (ledgered)")
    consent.add_argument("uri", metavar="NAME/N")
    consent.add_argument("consent", choices=("granted", "not-required", "unknown", "withdrawn"))
    consent.add_argument("--reason", default="")
    add_json_flag(consent)
    consent.set_defaults(handler=_set_consent)

    retention = verbs.add_parser("set-retention", help="record a new retention date (ledgered)")
    retention.add_argument("uri", metavar="NAME/N")
    retention.add_argument("date", metavar="YYYY-MM-DD")
    retention.add_argument("--reason", default="")
    add_json_flag(retention)
    retention.set_defaults(handler=_set_retention)


def _service() -> Any:
    from contextlib import contextmanager

    from modelward.services.context import open_registry
    from modelward.services.datasets import DatasetService

    @contextmanager
    def opened() -> Any:
        context = open_registry()
        try:
            yield DatasetService(context)
        finally:
            context.close()

    return opened()


def _add(args: argparse.Namespace) -> int:
    from pathlib import Path

    with _service() as service:
        result = service.add(
            Path(args.path),
            name=args.name,
            license_id=args.license,
            source=args.source,
            consent=args.consent,
            retention_until=args.retention_until,
            owner=args.owner,
            labeling_qa=Path(args.labeling_qa) if args.labeling_qa else None,
        )
    manifest = result.manifest
    data = {**result.record.to_dict(), "created": result.created, "manifest": manifest.to_dict()}
    if args.json:
        emit_json(data)
    else:
        note = "" if result.created else " (already stored; nothing created)"
        emit(
            f"{result.record.uri} sha256:{result.record.manifest_digest} "
            f"({len(manifest.files)} files, {manifest.record_count} records){note}"
        )
    return 0


def _list(args: argparse.Namespace) -> int:
    with _service() as service:
        rows = service.list(args.name)
    if args.json:
        emit_json(rows)
        return 0
    for row in rows:
        verdict = row["eligibility"]
        state = (
            "eligible" if verdict["eligible"] else "INELIGIBLE: " + "; ".join(verdict["reasons"])
        )
        facts = f"{row['license']}\tconsent {row['consent']}\t{row['files']} files"
        emit(f"{row['uri']}\t{facts}\t{state}")
    return 0


def _show(args: argparse.Namespace) -> int:
    with _service() as service:
        data = service.show(args.uri)
    if args.json:
        emit_json(data)
        return 0
    _render(data)
    return 0


def _render(data: dict[str, Any]) -> None:
    facts = data["effective"]
    emit(f"{data['uri']}\nmanifest: sha256:{data['manifest_digest']}")
    emit(f"added by {data['created_by']} at {data['created_at']} (ledger #{data['ledger_seq']})")
    emit(f"licence: {facts['license']}\nsource: {facts['source']}\nconsent: {facts['consent']}")
    emit(f"retention until: {facts['retention_until'] or '-'}\nowner: {facts['owner'] or '-'}")
    verdict = data["eligibility"]
    emit("eligible for new training runs" if verdict["eligible"] else "NOT eligible:")
    for reason in verdict["reasons"]:
        emit(f"  - {reason}")
    for warning in verdict["warnings"]:
        emit(f"  warning: {warning}")
    emit("files:")
    for entry in data["manifest"]["files"]:
        records = entry.get("records")
        extra = f"\t{records['count']} records, root {records['root'][:16]}…" if records else ""
        emit(f"  {entry['path']}\t{entry['size']} bytes\tsha256:{entry['sha256']}{extra}")
    for change in data["governance"]:
        emit(
            f"governance: {change['field']} = {change['value']} by {change['created_by']} "
            f"at {change['created_at']} (ledger #{change['ledger_seq']}) {change['reason']}"
        )
    for version in data["downstream"]:
        flag = " FLAGGED: trained on an ineligible dataset" if version["flagged"] else ""
        emit(f"used by {version['uri']}{flag}")


def _prove(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    with _service() as service:
        if args.record:
            data = service.prove(args.uri, args.record)
        else:
            data = service.prove_absent(args.uri, args.absent, args.file)
    if args.out:
        Path(args.out).write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    if args.json:
        emit_json(data)
    elif args.record:
        proof = data["proof"]
        emit(
            f"included: {proof['file']} line/row {proof['locator']} is record {proof['index'] + 1} "
            f"of {proof['treeSize']} (record hash {proof['recordHash']}); the audit path "
            f"verifies against root {proof['root']}"
        )
    else:
        for proof in data["proofs"]:
            emit(
                f"absent: {proof['recordHash']} is not in {proof['file']} "
                f"({proof['treeSize']} records; neighbours verify against sorted root "
                f"{proof['sortedRoot']})"
            )
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    import json

    from modelward.errors import InputError
    from modelward.interfaces.cli._notekeys import read_text_file
    from modelward.services.offline_proofs import TrustedRecordRoots, verify_record_proof_document

    def load(path: str, what: str) -> object:
        try:
            return json.loads(read_text_file(path, what))
        except ValueError as exc:
            raise InputError(f"{path}: the {what} is not JSON: {exc}") from exc

    if args.manifest_digest and not args.manifest:
        raise InputError("--manifest-digest pins a --manifest")
    manifest = load(args.manifest, "dataset manifest") if args.manifest else None
    if manifest is not None and not isinstance(manifest, dict):
        raise InputError(f"{args.manifest}: the dataset manifest is not a JSON object")
    trusted = TrustedRecordRoots(
        root=args.root,
        sorted_root=args.sorted_root,
        count=args.count,
        manifest=manifest,
        manifest_digest=args.manifest_digest,
    )
    result = verify_record_proof_document(load(args.proof, "proof"), trusted)
    if args.json:
        emit_json(result.to_dict())
    elif result.kind == "included":
        emit(f"verified: record {result.record_hash} is in {result.files[0]}")
    else:
        emit(f"verified: record {result.record_hash} is absent from {', '.join(result.files)}")
    return 0


def _set_consent(args: argparse.Namespace) -> int:
    with _service() as service:
        data = service.set_governance(args.uri, consent=args.consent, reason=args.reason)
    return _governance_result(args, data)


def _set_retention(args: argparse.Namespace) -> int:
    with _service() as service:
        data = service.set_governance(args.uri, retention_until=args.date, reason=args.reason)
    return _governance_result(args, data)


def _governance_result(args: argparse.Namespace, data: dict[str, Any]) -> int:
    if args.json:
        emit_json(data)
    else:
        _render(data)
    return 0
