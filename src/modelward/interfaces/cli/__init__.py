"""The `modelward` command line: parses arguments, calls one service, renders the result.

Each command lives in its own module exposing `register(subparsers)`; those modules import
heavy libraries only inside their handlers so that `modelward --help` starts fast.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import NoReturn

# Modules under modelward.interfaces.cli, each registering one noun or verb.
COMMAND_MODULES: tuple[str, ...] = (
    "keys",
    "sign",
    "verify",
    "registry_cmds",
    "audit",
    "scan",
    "users_cmds",
    "settings_cmds",
    "policy_cmds",
    "gate_cmds",
    "facts_cmds",
    "releases_cmds",
    "datasets",
    "provenance",
    "evaluation",
    "lineage",
    "bom",
    "reproduce",
    "forensics_cmds",
    "probe_cmds",
    "witness",
    "serve",
    "tokens_cmds",
    "oidc_cmds",
)


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises usage errors instead of exiting, so `--json` can report them as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="modelward",
        description="A governed registry and release gate for open-weight AI models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


class _VersionAction(argparse.Action):
    """Looks the version up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        parser.exit(message=f"modelward {_version()}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelward")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    arguments = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(arguments)
    except _UsageError as exc:
        exc.parser.print_usage(sys.stderr)
        print(f"{exc.parser.prog}: error: {exc.message}", file=sys.stderr)
        if "--json" in arguments:
            from modelward.interfaces.cli._errors import EXIT_USAGE, emit_error_json

            emit_error_json("UsageError", exc.message, [], EXIT_USAGE)
        return 2
    from modelward.interfaces.cli._errors import run_translated

    if os.environ.get("MODELWARD_URL", "").strip():
        from modelward.interfaces.cli.remote import handler_for

        local = args.handler
        args.handler = lambda parsed: (handler_for(parsed) or local)(parsed)
    return run_translated(args)


def entry_point() -> None:  # pragma: no cover - thin wrapper for the console script
    sys.exit(main())
