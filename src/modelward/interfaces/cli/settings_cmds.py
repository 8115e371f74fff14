"""Registry settings commands: settings show, settings set KEY VALUE (admin; ledgered)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json, warn


def register(subparsers: Any) -> None:
    settings = subparsers.add_parser(
        "settings", help="the registry's security settings (scan allow-list, gate path, ...)"
    )
    verbs = settings.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    show = verbs.add_parser("show", help="every setting, its value and who set it")
    add_json_flag(show)
    show.set_defaults(handler=_show)
    change = verbs.add_parser(
        "set",
        help="change a setting (admin only; written to the ledger)",
        description=(
            "KEY is one of scan.allow, gate.environments, gate.override_roles, "
            "gate.max_override, probe.suites. VALUE is JSON or, for a list, comma-separated "
            "(e.g. gate.override_roles admin or scan.allow '[\"mypkg.models:Net\"]')."
        ),
    )
    change.add_argument("key", metavar="KEY")
    change.add_argument("value", metavar="VALUE")
    add_json_flag(change)
    change.set_defaults(handler=_set)


def _render(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value) or "(none)"
    return json.dumps(value) if not isinstance(value, str) else value


def _show(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.settings import SettingsService

    with registry_context() as context:
        views = SettingsService(context).list()
    for view in views:
        if view.problem:
            warn(f"warning: {view.problem}; the default applies")
    if args.json:
        emit_json([v.to_dict() for v in views])
        return 0
    for view in views:
        origin = (
            f"set by {view.set_by} at {view.set_at} (ledger #{view.ledger_seq})"
            if view.source == "set"
            else view.source
        )
        emit(f"{view.key}\t{_render(view.value)}\t{origin}")
    return 0


def _set(args: argparse.Namespace) -> int:
    from modelward.interfaces.cli._context import registry_context
    from modelward.services.settings import SettingsService, parse_setting_text

    value = parse_setting_text(args.key, args.value)
    with registry_context() as context:
        view = SettingsService(context).set(args.key, value)
    if args.json:
        emit_json(view.to_dict())
    else:
        emit(f"{view.key} = {_render(view.value)} (ledger #{view.ledger_seq})")
    return 0
