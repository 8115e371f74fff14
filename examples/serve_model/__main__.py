"""`python -m examples.serve_model --uri models:/NAME@ENV [--env ENV] [--port P] ...`: the
example service over HTTP on 127.0.0.1 (see README.md for the interface)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from examples.serve_model.service import Degradation, ModelService, ServiceConfig

MAX_BODY = 64 * 1024


def make_server(service: ModelService, port: int = 0) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_: Any) -> None:
            pass

        def _reply(self, status: int, body: dict[str, Any]) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                raise ValueError("body too large")
            data = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(data, dict):
                raise ValueError("a JSON object is expected")
            return data

        def do_GET(self) -> None:
            if self.path == "/healthz":
                self._reply(
                    200,
                    {
                        "model": service.uri,
                        "release_id": service.release_id,
                        "degradation": service.config.degradation.to_dict(),
                    },
                )
            else:
                self._reply(404, {"error": "not found"})

        def do_POST(self) -> None:
            try:
                body = self._body()
                if self.path == "/generate":
                    prompt = body.get("prompt")
                    tokens = body.get("max_new_tokens", 16)
                    if not isinstance(prompt, str) or not isinstance(tokens, int):
                        raise ValueError("prompt (string) and max_new_tokens (integer) expected")
                    self._reply(200, service.generate(prompt, max(1, min(tokens, 256))))
                elif self.path == "/admin/degrade":
                    service.set_degradation(Degradation(**body))
                    self._reply(200, service.config.degradation.to_dict())
                elif self.path == "/admin/flush":
                    self._reply(200, {"server": service.flush()})
                else:
                    self._reply(404, {"error": "not found"})
            except (ValueError, TypeError) as exc:
                self._reply(400, {"error": str(exc)})

    return ThreadingHTTPServer(("127.0.0.1", port), Handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m examples.serve_model")
    parser.add_argument("--uri", required=True)
    parser.add_argument("--env")
    parser.add_argument("--cache-dir")
    parser.add_argument("--port", type=int, default=8088)
    parser.add_argument("--otlp-url", default=os.environ.get("MODELWARD_OTLP_URL"))
    parser.add_argument("--span-file")
    parser.add_argument("--arm")
    parser.add_argument("--latency", type=float, default=0.0)
    parser.add_argument("--refusal-rate", type=float, default=0.0)
    parser.add_argument("--error-rate", type=float, default=0.0)
    args = parser.parse_args(argv)
    config = ServiceConfig(
        uri=args.uri,
        environment=args.env,
        cache_dir=args.cache_dir,
        otlp_url=args.otlp_url,
        otlp_token=os.environ.get("MODELWARD_TELEMETRY_TOKEN"),
        span_file=args.span_file,
        arm=args.arm,
        degradation=Degradation(args.latency, args.refusal_rate, args.error_rate),
    )
    service = ModelService(config)
    server = make_server(service, args.port)
    print(f"serving {service.uri} on http://127.0.0.1:{server.server_port}", file=sys.stderr)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        service.flush()
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
