"""`modelward witness`: run a C2SP tlog-witness (`serve`) and make its key (`keygen`).

The witness is a separate process that needs no registry: only its own key, a state folder and
the public keys of the logs it watches."""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import add_json_flag, emit, emit_json


def register(subparsers: Any) -> None:
    witness = subparsers.add_parser("witness", help="run a transparency-log witness")
    verbs = witness.add_subparsers(dest="verb", metavar="VERB")
    verbs.required = True
    keygen = verbs.add_parser("keygen", help="write a witness key FILE and its vkey FILE.vkey")
    keygen.add_argument("--out", required=True, metavar="FILE")
    keygen.add_argument("--name", required=True, help="the witness's name, e.g. example.com/w1")
    add_json_flag(keygen)
    keygen.set_defaults(handler=_keygen)

    serve = verbs.add_parser("serve", help="cosign checkpoints over HTTP (POST /add-checkpoint)")
    serve.add_argument("--key", required=True, metavar="WITNESS_KEY")
    serve.add_argument("--name", help="the witness's name (default: from WITNESS_KEY.vkey)")
    serve.add_argument("--state", required=True, metavar="DIR", help="where state is kept")
    serve.add_argument(
        "--init",
        action="store_true",
        help="the witness's first start: create its state in DIR (refused once DIR holds state; "
        "without it, a missing or empty DIR is refused)",
    )
    serve.add_argument(
        "--log",
        action="append",
        required=True,
        metavar="ORIGIN=VKEY",
        help="a log to witness and its key: vkey text or file, or a PEM file (repeatable)",
    )
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=7380, help="0 picks a free port")
    serve.set_defaults(handler=_serve)


def _keygen(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from modelward.core.cosignature import CosignerKey
    from modelward.errors import PathError
    from modelward.signing.keys import private_key_pem

    out = Path(args.out)
    vkey_path = out.with_name(out.name + ".vkey")
    key = Ed25519PrivateKey.generate()
    public = CosignerKey.from_public_key(args.name, key.public_key())
    for target in (out, vkey_path):
        if target.exists() or target.is_symlink():
            raise PathError(f"{target}: already exists; refusing to overwrite a key")
    try:
        fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(private_key_pem(key))
        vkey_path.write_text(public.vkey() + "\n", encoding="utf-8")
    except OSError as exc:
        raise PathError(f"{out}: cannot write key: {exc.strerror or exc}") from exc
    if args.json:
        emit_json({"private_key": str(out), "vkey_file": str(vkey_path), "vkey": public.vkey()})
    else:
        emit(f"wrote witness key {out} and its vkey {vkey_path}:\n{public.vkey()}")
    return 0


def _logs(values: list[str]) -> dict[str, list[Any]]:
    from modelward.errors import InputError
    from modelward.interfaces.cli._notekeys import log_key

    logs: dict[str, list[Any]] = {}
    for value in values:
        origin, sep, key = value.partition("=")
        if not sep or not origin or "+" in origin:
            # a bare vkey: its key name is the origin
            origin, key = "", value
        verifier = log_key(key, origin or None)
        if not origin:
            if not hasattr(verifier, "name"):
                raise InputError(f"--log {value!r}: a PEM key needs ORIGIN=FILE")
            origin = verifier.name
        logs.setdefault(origin, []).append(verifier)
    return logs


def _witness_identity(args: argparse.Namespace) -> tuple[str, Any]:
    from pathlib import Path

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from modelward.core.cosignature import CosignerKey
    from modelward.errors import InputError, KeyFormatError
    from modelward.interfaces.cli._notekeys import witness_key
    from modelward.signing.keys import load_private_key

    key = load_private_key(Path(args.key))
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyFormatError(f"{args.key}: a witness key is Ed25519")
    name = args.name
    vkey_file = Path(args.key + ".vkey")
    if name is None:
        if not vkey_file.is_file():
            raise InputError(f"give --name, or keep the witness's vkey next to it ({vkey_file})")
        name = witness_key(str(vkey_file)).name
    public = CosignerKey.from_public_key(name, key.public_key())
    if vkey_file.is_file() and witness_key(str(vkey_file)).public_key != public.public_key:
        raise KeyFormatError(f"{vkey_file} is not the vkey of {args.key}")
    return name, key


def _serve(args: argparse.Namespace) -> int:
    import signal
    import sys
    import threading
    from pathlib import Path

    from modelward.errors import InputError
    from modelward.interfaces.witness_http import WitnessHTTPServer, stderr_log
    from modelward.services.witness import WitnessService
    from modelward.storage.witness_state import DirectoryWitnessState

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port {args.port} is not a TCP port")
    name, key = _witness_identity(args)
    logs = _logs(args.log)
    store = DirectoryWitnessState(Path(args.state), init=args.init)
    try:
        service = WitnessService(name, key, logs, store, on_misbehaviour=stderr_log)
        try:
            server = WitnessHTTPServer((args.host, args.port), service, stderr_log)
        except OSError as exc:
            raise InputError(f"cannot listen on {args.host}:{args.port}: {exc}") from exc

        def stop(*_: object) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        host, port = str(server.server_address[0]), int(server.server_address[1])
        emit(f"witness {name} listening on http://{host}:{port} for {', '.join(sorted(logs))}")
        emit(service.key.vkey())
        sys.stdout.flush()
        try:
            server.serve_forever(poll_interval=0.2)
        finally:
            server.server_close()
    finally:
        store.close()
    stderr_log("stopped")
    return 0
