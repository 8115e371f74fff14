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
    "oci_cmds",
    "evidence_cmds",
    "runtime_cmds",
    "canary_cmds",
    "drift_cmds",
)

# The module registering each command word, so that one invocation imports and builds only the
# module it runs (start-up time: the remote CLI, `serve`). A word missing here still works, by
# the full parser; a test pins this table to what the modules register.
COMMAND_OWNERS: dict[str, str] = {
    "keys": "keys",
    "sign": "sign",
    "verify": "verify",
    **dict.fromkeys(
        ("init", "push", "pull", "models", "versions", "show", "alias", "fsck"), "registry_cmds"
    ),
    "audit": "audit",
    "scan": "scan",
    "users": "users_cmds",
    "whoami": "users_cmds",
    "settings": "settings_cmds",
    "policy": "policy_cmds",
    **dict.fromkeys(("promote", "override", "approve", "decisions"), "gate_cmds"),
    "facts": "facts_cmds",
    "releases": "releases_cmds",
    "rollback": "releases_cmds",
    "datasets": "datasets",
    "provenance": "provenance",
    "eval": "evaluation",
    "lineage": "lineage",
    "bom": "bom",
    "reproduce": "reproduce",
    "witness": "witness",
    "serve": "serve",
    "tokens": "tokens_cmds",
    "oidc": "oidc_cmds",
    "oci": "oci_cmds",
    "evidence": "evidence_cmds",
    "telemetry": "runtime_cmds",
    "fetch": "runtime_cmds",
    "canary": "canary_cmds",
    "drift": "drift_cmds",
    "alerts": "drift_cmds",
    "forensics": "forensics_cmds",
    "probe": "probe_cmds",
}


class _UsageError(Exception):
    def __init__(self, parser: argparse.ArgumentParser, message: str) -> None:
        super().__init__(message)
        self.parser = parser
        self.message = message


class _Parser(argparse.ArgumentParser):
    """Raises usage errors instead of exiting, so `--json` can report them as JSON too."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(self, message)


def build_parser(modules: Sequence[str] = COMMAND_MODULES) -> argparse.ArgumentParser:
    """The parser of every command (or of those `modules` register)."""
    parser = _Parser(
        prog="modelward",
        description="A governed registry and release gate for open-weight AI models.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--version", action=_VersionAction, nargs=0, help="print the version")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in modules:
        module = importlib.import_module(f"{__name__}.{name}")
        module.register(subparsers)
    return parser


class _VersionAction(argparse.Action):
    """Looks the version up only when asked (importlib.metadata is slow to import)."""

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        sys.stdout.write(f"modelward {_version()}\n")  # on stdout, as argparse's own does
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("modelward")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


def _command_word(arguments: Sequence[str]) -> str | None:
    """The command word when it comes first (after `--debug`), else None (help, version, typos:
    the full parser answers those)."""
    for argument in arguments:
        if argument == "--debug":
            continue
        return argument if argument in COMMAND_OWNERS else None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    word = _command_word(arguments)
    parser = build_parser() if word is None else build_parser([COMMAND_OWNERS[word]])
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
