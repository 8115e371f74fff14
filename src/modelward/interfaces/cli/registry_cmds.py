"""Registry commands: init, push, pull, models list, versions list, show, alias set/delete, fsck."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    init = subparsers.add_parser("init", help="create a registry in $MODELWARD_HOME")
    add_json_flag(init)
    init.set_defaults(handler=_init)

    push = subparsers.add_parser("push", help="store a model bundle as a new version")
    push.add_argument("model_path", metavar="MODEL_PATH")
    push.add_argument("--model", required=True, help="model name")
    push.add_argument("--description", default="")
    push.add_argument("--signature", help="the uploader's OMS signature of the bundle")
    push.add_argument("--public-key", help="the uploader's public key (with --signature)")
    push.add_argument(
        "--accept-malformed",
        action="append",
        default=[],
        metavar="RULE",
        help="store despite malformed findings of this scan rule (repeatable)",
    )
    push.add_argument(
        "--change",
        choices=(
            "weights",
            "data",
            "prompt",
            "safety-policy",
            "quantization",
            "architecture",
            "tokenizer",
            "config",
        ),
        help="the declared change class, checked against the file diff",
    )
    push.add_argument(
        "--compat", choices=("compatible", "eval-only", "breaking"), help="declared compatibility"
    )
    push.add_argument("--provenance", metavar="FILE", help="signed SLSA provenance (DSSE JSON)")
    push.add_argument("--provenance-key", metavar="PUB", help="a key trusted for --provenance")
    add_json_flag(push)
    push.set_defaults(handler=_push)

    pull = subparsers.add_parser(
        "pull",
        help="write a version's bundle (or a release's full state), verified, to a folder",
        description="`pull URI --out DIR` writes the bundle and its registry signature "
        "(DIR.sig, for `model_signing verify key DIR`); `pull --release RELEASE_ID --out DIR` or "
        "`pull --release ENV --model NAME --out DIR` writes a release's full state: bundle/, "
        "bundle.sig, prompt_templates/, policy_files/, flags.json and release.json.",
    )
    pull.add_argument("uri", metavar="URI", nargs="?")
    pull.add_argument("--out", required=True, help="a new or empty folder")
    pull.add_argument(
        "--signature",
        metavar="SIG",
        help="where to write the registry's OMS signature (default: OUT.sig)",
    )
    pull.add_argument(
        "--file-name",
        metavar="NAME",
        help="a single-file version's file name in OUT (default: the name it was pushed under)",
    )
    pull.add_argument(
        "--release", metavar="RELEASE_ID|ENV", help="pull a release's full state instead"
    )
    pull.add_argument("--model", metavar="NAME", help="with --release ENV: the model")
    add_json_flag(pull)
    pull.set_defaults(handler=_pull)

    models = subparsers.add_parser("models", help="list models")
    models_verbs = models.add_subparsers(dest="verb", metavar="VERB")
    models_verbs.required = True
    models_list = models_verbs.add_parser("list", help="every model with its version count")
    add_json_flag(models_list)
    models_list.set_defaults(handler=_models_list)

    versions = subparsers.add_parser("versions", help="list a model's versions")
    versions_verbs = versions.add_subparsers(dest="verb", metavar="VERB")
    versions_verbs.required = True
    versions_list = versions_verbs.add_parser("list", help="every version of NAME")
    versions_list.add_argument("name", metavar="NAME")
    add_json_flag(versions_list)
    versions_list.set_defaults(handler=_versions_list)

    show = subparsers.add_parser("show", help="a version's manifest, signatures and aliases")
    show.add_argument("uri", metavar="URI")
    show.add_argument(
        "--attestations",
        action="store_true",
        help="with --out DIR: write every verified DSSE envelope to DIR, one file each",
    )
    show.add_argument("--out", metavar="DIR", help="the folder --attestations writes to")
    add_json_flag(show)
    show.set_defaults(handler=_show)

    alias = subparsers.add_parser("alias", help="name a version")
    alias_verbs = alias.add_subparsers(dest="verb", metavar="VERB")
    alias_verbs.required = True
    alias_set = alias_verbs.add_parser("set", help="point NAME@ALIAS at version N")
    alias_set.add_argument("name", metavar="NAME")
    alias_set.add_argument("alias", metavar="ALIAS")
    alias_set.add_argument("number", metavar="N", type=_positive_int)
    add_json_flag(alias_set)
    alias_set.set_defaults(handler=_alias_set)
    alias_delete = alias_verbs.add_parser("delete", help="remove NAME@ALIAS")
    alias_delete.add_argument("name", metavar="NAME")
    alias_delete.add_argument("alias", metavar="ALIAS")
    add_json_flag(alias_delete)
    alias_delete.set_defaults(handler=_alias_delete)

    fsck = subparsers.add_parser("fsck", help="find orphan blobs and half-finished writes")
    fsck.add_argument("--repair", action="store_true", help="remove what was found")
    fsck.add_argument(
        "--grace",
        type=_seconds,
        default=3600.0,
        metavar="SECONDS",
        help="leave temporary files and unreferenced blobs younger than this alone "
        "(a push may still be writing them; default 3600; at least 300 with --repair)",
    )
    add_json_flag(fsck)
    fsck.set_defaults(handler=_fsck)


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds (0 or more)")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1 or len(text) > 18:
        raise argparse.ArgumentTypeError(f"{text!r} is not a version number (1, 2, …)")
    return int(text)


def _init(args: argparse.Namespace) -> int:
    from modelward.services.registry_init import initialize_registry

    result = initialize_registry()
    data = {
        "home": str(result.home),
        "database": _redacted(result.database_url),
        "blobs": result.blob_url,
        "created": result.created,
        "admin": result.admin,
        "registry_key_id": result.registry_key_id,
        "ledger_key_id": result.ledger_key_id,
        "baseline_seq": result.baseline_seq,
    }
    if args.json:
        emit_json(data)
    elif result.created:
        emit(f"created a registry in {result.home} (admin: {result.admin})")
    else:
        emit(f"the registry in {result.home} exists; its schema is now up to date")
        if result.baseline_seq is not None:
            emit(
                f"sealed the ledger: event #{result.baseline_seq} (ledger.baseline) anchors "
                "every existing row; what came before it is trusted as it was at this upgrade"
            )
    return 0


def _redacted(url: str) -> str:
    from modelward.storage.metadata.database import _redact

    return _redact(url)


def _push(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.interfaces.cli._progress import ProgressBar, total_size
    from modelward.interfaces.cli._registry import registry_service
    from modelward.services.change import change_hook
    from modelward.signing.keys import Verifier, load_public_key

    verifier = Verifier(load_public_key(Path(args.public_key))) if args.public_key else None
    provenance_keys = [verifier] if verifier else []
    if args.provenance_key:
        provenance_keys.append(Verifier(load_public_key(Path(args.provenance_key))))
    with (
        registry_service() as service,
        ProgressBar(total_size(args.model_path), "storing") as progress,
    ):
        result = service.push(
            Path(args.model_path),
            args.model,
            description=args.description,
            signature_path=Path(args.signature) if args.signature else None,
            public_key=verifier,
            accept_malformed=args.accept_malformed,
            progress=progress,
            change=change_hook(args.change, args.compat) if args.change or args.compat else None,
            provenance=_provenance_hook(service, args.provenance, provenance_keys),
        )
    data = {**result.version.to_dict(), "created": result.created}
    if args.json:
        emit_json(data)
    elif result.created:
        emit(f"{result.version.uri} sha256:{result.version.root_digest}")
    else:
        emit(
            f"{result.version.uri} sha256:{result.version.root_digest} (already stored; "
            "nothing created)"
        )
    return 0


def _provenance_hook(service: Any, path: str | None, keys: list[Any]) -> Any:
    if path is None:
        return None
    from pathlib import Path

    from modelward.services.provenance import ProvenanceService

    return ProvenanceService(service.ctx, service.actor).push_hook(Path(path), keys)


def _pull(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.errors import InputError
    from modelward.interfaces.cli._registry import registry_service

    out = Path(args.out)
    if args.release is not None:
        if args.uri or args.signature or args.file_name:
            raise InputError(
                "--release pulls a whole release: give no URI, --signature or --file-name"
            )
        return _pull_release(args, out)
    if not args.uri:
        raise InputError("name a version to pull (URI), or a release with --release")
    if args.model:
        raise InputError("--model goes with --release ENV")
    signature = Path(args.signature) if args.signature else _default_signature(out)
    with registry_service() as service:
        result = service.pull_to(args.uri, out, signature_path=signature, file_name=args.file_name)
    if args.json:
        emit_json(result.to_dict())
    else:
        where = f"{args.out}/{result.file_name}" if result.file_name else args.out
        emit(f"pulled {result.version.uri} into {where}; every file and the signature verified")
        emit(f"registry signature: {signature} (model_signing verify key {args.out} ...)")
    return 0


def _default_signature(out: Any) -> Any:
    """`DIR.sig` next to the output folder (`--out .` gives `../NAME.sig`)."""
    resolved = out.resolve()
    return resolved.with_name(resolved.name + ".sig")


def _pull_release(args: argparse.Namespace, out: Any) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.releases import ReleaseService

    with registry_context() as context:
        service = ReleaseService(context)
        if args.model:
            data = service.pull_release(out, environment=args.release, model=args.model)
        else:
            data = service.pull_release(out, release_id=args.release)
    if args.json:
        emit_json(data)
    else:
        emit(
            f"pulled release {data['release_id']} ({data['uri']} in "
            f"{data['state']['environment']}) into {args.out}; every file and the signature "
            "verified"
        )
    return 0


def _models_list(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        rows = service.list_models()
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            emit(f"{row['name']}\t{row['versions']} versions\tlatest {row['latest'] or '-'}")
    return 0


def _versions_list(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        rows = service.list_versions(args.name)
    if args.json:
        emit_json(rows)
    else:
        for row in rows:
            aliases = ",".join(row["aliases"])
            emit(
                f"{row['uri']}\tsha256:{row['root_digest'][:16]}…\t{row['created_at']}\t"
                f"{row['created_by']}\t{aliases}"
            )
    return 0


def _show(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    if args.attestations or args.out:
        from modelward.interfaces.cli.attestation_export import export_attestations

        return export_attestations(args)
    with registry_service() as service:
        data = service.show(args.uri)
    return render_show(args, data)


def render_show(args: argparse.Namespace, data: dict[str, Any]) -> int:
    """Print a version as `show` does (embedded or remote)."""
    if args.json:
        emit_json(data)
        return 0
    emit(f"{data['uri']}\nroot digest: sha256:{data['root_digest']}")
    emit(f"pushed by {data['created_by']} at {data['created_at']} (ledger #{data['ledger_seq']})")
    if data["description"]:
        emit(f"description: {data['description']}")
    emit(f"aliases: {', '.join(data['aliases']) or '-'}")
    for environment in data.get("override_expired_in", []):
        emit(f"OVERRIDE EXPIRED in {environment}: promote normally or roll back there")
    emit("files:")
    for entry in data["manifest"]["files"]:
        emit(f"  {entry['name']}\t{entry.get('size', '?')} bytes\tsha256:{entry['digest']}")
    emit("attestations:")
    for att in data["attestations"]:
        if att.get("verified"):
            key = f" verified ({att['key_name']} key {att['key_id'][:16]}…)"
        else:
            key = f" UNVERIFIED ({att.get('problem', 'not checked')})"
        summary = _attestation_summary(att)
        emit(f"  {att['kind']} by {att['by']} at {att['created_at']}{summary}{key}")
    for problem in data.get("trust_problems", []):
        emit(f"  note: {problem}")
    _show_evidence(data)
    return 0


def _show_evidence(data: dict[str, Any]) -> None:
    provenance = data.get("provenance") or {}
    if provenance.get("present"):
        emit(f"provenance: signed by key {str(provenance['signer_key'])[:16]}…")
        emit(f"  datasets: {', '.join(provenance['datasets']) or '-'}")
        emit(f"  base model: {provenance['base_model'] or '-'}")
        emit(f"  missing fields: {', '.join(provenance['missing']) or 'none'}")
        for uri, reasons in provenance["ineligible_datasets"].items():
            emit(f"  FLAGGED: trained on {uri}, which is not eligible: {'; '.join(reasons)}")
    elif "provenance" in data:
        emit("provenance: none")
    for evaluation in data.get("evaluations", []):
        if not evaluation["verified"]:
            emit(f"evaluation: UNVERIFIED ({evaluation['error']})")
            continue
        metrics = ", ".join(f"{k}={v}" for k, v in sorted(evaluation["metrics"].items()))
        emit(
            f"evaluation {evaluation['suite']}: {evaluation['result']} {metrics} "
            f"(by {evaluation['evaluator']} at {evaluation['evaluated_on']})"
        )


def _attestation_summary(att: dict[str, Any]) -> str:
    predicate = att.get("statement", {}).get("predicate", {})
    if isinstance(predicate, dict) and "verdict" in predicate:
        return f": {predicate['verdict']}"
    return ""


def _alias_set(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        record = service.set_alias(args.name, args.alias, args.number)
    if args.json:
        emit_json({"model": args.name, "alias": args.alias, "version": record.number})
    else:
        emit(f"models:/{args.name}@{args.alias} -> {record.uri}")
    return 0


def _alias_delete(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        service.delete_alias(args.name, args.alias)
    if args.json:
        emit_json({"model": args.name, "alias": args.alias, "deleted": True})
    else:
        emit(f"deleted models:/{args.name}@{args.alias}")
    return 0


def _fsck(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._registry import registry_service

    with registry_service() as service:
        report = service.fsck(repair=args.repair, grace_seconds=args.grace)
    if args.json:
        emit_json({**report.details, "problems": report.problems})
    else:
        for problem in report.problems:
            emit(("removed " if args.repair else "") + problem)
        if not report.problems:
            emit("no orphan blobs and no half-finished writes")
        spared = report.details.get("spared_for_pending_pushes") or []
        if spared:
            emit(f"left {len(spared)} unreferenced blobs alone: a push in flight may use them")
        kept = report.details.get("kept_for_new_pushes") or []
        if kept:
            emit(f"kept {len(kept)} orphan blobs: a push started meanwhile; run fsck again later")
    return 0
