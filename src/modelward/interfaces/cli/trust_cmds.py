"""The ledgered security settings the gate's facts depend on, as verbs of existing nouns:

- `modelward keys trust PUBKEY --name NAME`, `keys untrust KEY_ID|NAME`, `keys trusted` (admin);
- `modelward eval thresholds set SUITE --metric NAME (--min X | --max X | --direction D)`,
  `eval thresholds set SUITE --file FILE.yaml`, `eval thresholds unset SUITE --metric NAME`,
  `eval thresholds show [SUITE]` (reviewer or admin);
- `modelward provenance require FIELD... | --default`, `provenance requirements` (admin).

Each `register_*` adds verbs to a noun's sub-parsers; handlers parse, call one service, render.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register_key_trust(verbs: Any) -> None:
    trust = verbs.add_parser("trust", help="trust PUBKEY's signatures (uploads, provenance)")
    trust.add_argument("public_key", metavar="PUBKEY", help="a PEM public key file")
    trust.add_argument("--name", required=True, help="who or what signs with it")
    add_json_flag(trust)
    trust.set_defaults(handler=_trust)
    untrust = verbs.add_parser("untrust", help="stop trusting a key")
    untrust.add_argument("key", metavar="KEY_ID|NAME", help="its name or key id (>= 8 hex)")
    add_json_flag(untrust)
    untrust.set_defaults(handler=_untrust)
    trusted = verbs.add_parser("trusted", help="list the trusted keys")
    add_json_flag(trusted)
    trusted.set_defaults(handler=_trusted)


def register_thresholds(verbs: Any) -> None:
    thresholds = verbs.add_parser(
        "thresholds", help="pass marks and directions per suite (set by reviewers)"
    )
    sub = thresholds.add_subparsers(dest="thresholds_verb", metavar="VERB")
    sub.required = True
    setter = sub.add_parser("set", help="set a metric's pass mark, or a whole suite from a file")
    setter.add_argument("suite", metavar="SUITE")
    setter.add_argument("--metric", metavar="NAME")
    bound = setter.add_mutually_exclusive_group()
    bound.add_argument("--min", type=float, metavar="X", help="higher is better; pass at >= X")
    bound.add_argument("--max", type=float, metavar="X", help="lower is better; pass at <= X")
    bound.add_argument("--direction", choices=("higher", "lower"), help="direction only")
    setter.add_argument("--file", metavar="FILE", help="YAML/JSON {METRIC: {min: X}|{max: X}}")
    add_json_flag(setter)
    setter.set_defaults(handler=_thresholds_set)
    unset = sub.add_parser("unset", help="remove a metric's threshold")
    unset.add_argument("suite", metavar="SUITE")
    unset.add_argument("--metric", required=True, metavar="NAME")
    add_json_flag(unset)
    unset.set_defaults(handler=_thresholds_unset)
    show = sub.add_parser("show", help="the thresholds of SUITE (or of every suite)")
    show.add_argument("suite", nargs="?", metavar="SUITE")
    add_json_flag(show)
    show.set_defaults(handler=_thresholds_show)


def register_provenance_requirements(verbs: Any) -> None:
    require = verbs.add_parser(
        "require", help="set which provenance fields complete provenance needs (admin)"
    )
    require.add_argument("fields", nargs="*", metavar="FIELD")
    require.add_argument(
        "--default", action="store_true", help="back to the default (all but gpu, base_model)"
    )
    add_json_flag(require)
    require.set_defaults(handler=_require)
    requirements = verbs.add_parser("requirements", help="the required provenance fields")
    add_json_flag(requirements)
    requirements.set_defaults(handler=_requirements)


# -- keys ---------------------------------------------------------------------------------------


def _trust(args: argparse.Namespace) -> int:
    from pathlib import Path

    from modelward.errors import PathError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.trusted_keys import MAX_PUBLIC_KEY_BYTES, TrustedKeyService

    path = Path(args.public_key)
    try:
        data = path.read_bytes()[: MAX_PUBLIC_KEY_BYTES + 1]
    except OSError as exc:
        raise PathError(f"{path}: cannot read the public key: {exc.strerror or exc}") from exc
    with registry_context() as context:
        key = TrustedKeyService(context).trust(data, args.name)
    if args.json:
        emit_json(key.to_dict())
    else:
        emit(f"trusted key {key.key_id} as {key.name!r}")
    return 0


def _untrust(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.trusted_keys import TrustedKeyService

    with registry_context() as context:
        key = TrustedKeyService(context).untrust(args.key)
    if args.json:
        emit_json({**key.to_dict(), "trusted": False})
    else:
        emit(f"no longer trusted: key {key.key_id} ({key.name!r})")
    return 0


def _trusted(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.trusted_keys import TrustedKeyService

    with registry_context() as context:
        keys = TrustedKeyService(context).list()
    if args.json:
        emit_json([k.to_dict() for k in keys])
        return 0
    if not keys:
        emit("no trusted keys (add one with `modelward keys trust PUBKEY --name NAME`)")
    for key in keys:
        emit(f"{key.key_id}\t{key.name}\ttrusted by {key.trusted_by} at {key.trusted_at}")
    return 0


# -- thresholds ---------------------------------------------------------------------------------


def _thresholds_set(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.thresholds import ThresholdService

    bound_given = args.min is not None or args.max is not None or args.direction is not None
    if args.file is not None:
        if args.metric is not None or bound_given:
            raise InputError("--file replaces the whole suite; do not combine it with --metric")
        document = _read_thresholds_file(args.file)
        with registry_context() as context:
            result = ThresholdService(context).set_suite(args.suite, document)
    else:
        if args.metric is None or not bound_given:
            raise InputError("give --metric NAME with --min X, --max X or --direction, or --file")
        with registry_context() as context:
            result = ThresholdService(context).set_metric(
                args.suite,
                args.metric,
                minimum=args.min,
                maximum=args.max,
                direction=args.direction,
            )
    _render_thresholds(args, [result.to_dict()])
    return 0


def _thresholds_unset(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.thresholds import ThresholdService

    with registry_context() as context:
        result = ThresholdService(context).unset_metric(args.suite, args.metric)
    _render_thresholds(args, [result.to_dict()])
    return 0


def _thresholds_show(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.thresholds import ThresholdService

    with registry_context() as context:
        suites = ThresholdService(context).show(args.suite)
    _render_thresholds(args, [s.to_dict() for s in suites])
    return 0


def _render_thresholds(args: argparse.Namespace, suites: list[dict[str, Any]]) -> None:
    if args.json:
        emit_json(suites if len(suites) != 1 or args.suite is None else suites[0])
        return
    if not suites:
        emit("no thresholds set (set them with `modelward eval thresholds set SUITE ...`)")
    for suite in suites:
        by = f" (set by {suite['set_by']} at {suite['set_at']})" if suite["set_by"] else ""
        emit(f"suite {suite['suite']}{by}:")
        if not suite["metrics"]:
            emit("  no thresholds")
        for name, entry in suite["metrics"].items():
            if entry["threshold"] is None:
                emit(f"  {name}: {entry['direction']} is better, no pass mark")
            else:
                sign = ">=" if entry["direction"] == "higher" else "<="
                emit(f"  {name} {sign} {entry['threshold']:g}")


def _read_thresholds_file(name: str) -> Any:
    from pathlib import Path

    import yaml

    from modelward.errors import InputError, PathError

    path = Path(name)
    try:
        if path.stat().st_size > 1024 * 1024:
            raise InputError(f"{path}: the thresholds file is larger than 1 MiB")
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except UnicodeDecodeError as exc:
        raise InputError(f"{path}: not UTF-8 text") from exc
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: not valid YAML or JSON: {exc}") from exc


# -- provenance requirements --------------------------------------------------------------------


def _require(args: argparse.Namespace) -> int:
    from modelward.errors import InputError
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.provenance_requirements import ProvenanceRequirementsService

    if args.default == bool(args.fields):
        raise InputError("give the required FIELDs, or --default")
    with registry_context() as context:
        service = ProvenanceRequirementsService(context)
        result = service.reset() if args.default else service.set(args.fields)
    _render_requirements(args, result.to_dict())
    return 0


def _requirements(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.provenance_requirements import ProvenanceRequirementsService

    with registry_context() as context:
        result = ProvenanceRequirementsService(context).show()
    _render_requirements(args, result.to_dict())
    return 0


def _render_requirements(args: argparse.Namespace, data: dict[str, Any]) -> None:
    if args.json:
        emit_json(data)
        return
    emit(f"required ({data['source']}): {', '.join(data['required']) or 'none'}")
    emit(f"optional: {', '.join(data['optional']) or 'none'}")
