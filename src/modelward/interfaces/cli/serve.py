"""`modelward serve`: run the registry as an HTTP server (FastAPI on uvicorn).

In server mode the identity is the bearer token's; `MODELWARD_ACTOR` is ignored. TLS is best
terminated by a reverse proxy; `--ssl-keyfile/--ssl-certfile` are handed to uvicorn.
"""

from __future__ import annotations

import argparse
from typing import Any

from modelward.interfaces.cli._output import warn

KEEP_ALIVE_SECONDS = 30


def register(subparsers: Any) -> None:
    serve = subparsers.add_parser("serve", help="serve the registry over HTTP (tokens, OIDC)")
    serve.add_argument("--host", default="127.0.0.1", help="address to listen on")
    serve.add_argument("--port", type=_port, default=8080)
    serve.add_argument("--workers", type=_workers, default=1, help="server processes")
    serve.add_argument("--ssl-keyfile", metavar="FILE")
    serve.add_argument("--ssl-certfile", metavar="FILE")
    serve.set_defaults(handler=_serve)


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise argparse.ArgumentTypeError(f"{text!r} is not a TCP port (1-65535)")
    return int(text)


def _workers(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) <= 64:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of workers (1-64)")
    return int(text)


def _serve(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from modelward.errors import DependencyError, PathError
    from modelward.services.context import home_dir, open_registry

    try:
        import uvicorn
    except ImportError as exc:
        raise DependencyError(
            "the server needs its extra: pip install 'modelward[server]'"
        ) from exc
    if (args.ssl_keyfile is None) != (args.ssl_certfile is None):
        raise PathError("--ssl-keyfile and --ssl-certfile go together")
    for path in (args.ssl_keyfile, args.ssl_certfile):
        if path is not None and not Path(path).is_file():
            raise PathError(f"{path}: no such file")
    if args.ssl_certfile is None and args.host not in ("127.0.0.1", "::1", "localhost"):
        warn(
            f"serving plain HTTP on {args.host}: bearer tokens and bundles cross the network in "
            "clear; put a TLS reverse proxy in front or pass --ssl-keyfile/--ssl-certfile"
        )
    if os.environ.get("MODELWARD_ACTOR"):
        warn("MODELWARD_ACTOR is ignored by the server: every request acts as its token's user")
    home = home_dir()
    context = open_registry(home)  # fail now, with the usual message, not in every worker
    os.environ["MODELWARD_HOME"] = str(home)
    app: Any = "modelward.interfaces.http.asgi:create"
    if args.workers == 1:  # one process: serve the registry just opened (no second opening)
        from modelward.interfaces.http.asgi import create

        app = create(context)
    else:  # each worker process opens its own
        context.close()
    uvicorn.run(
        app,
        factory=args.workers > 1,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ssl_keyfile=args.ssl_keyfile,
        ssl_certfile=args.ssl_certfile,
        proxy_headers=False,
        server_header=False,
        log_level="info",
        timeout_graceful_shutdown=10,
        # longer than clients keep idle connections (httpx: 5 s), so a client never sends on a
        # connection the server is closing (a reset under load)
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )
    return 0
