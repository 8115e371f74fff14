"""HTTP for witnesses (C2SP tlog-witness): a stdlib server exposing `POST /add-checkpoint` for a
`WitnessService`, and the client transport the registry uses to call one.

The server is a `ThreadingHTTPServer` (HTTP/1.1, keep-alive, a per-connection socket timeout, a
bounded request body); it maps the service's typed refusals to the spec's statuses, and answers
`GET /` with the witness's name and vkey. The client is `urllib` with a timeout. Neither decides
anything: the service does.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from modelward import errors
from modelward.core.witness_protocol import MAX_REQUEST_BYTES, SIZE_CONTENT_TYPE, WitnessResponse
from modelward.services.witness import WitnessService

CONNECTION_TIMEOUT = 30.0
LISTEN_BACKLOG = 128


def _status_for(exc: errors.ModelwardError) -> tuple[int, str, bytes]:
    message = (str(exc).strip() or type(exc).__name__).encode("utf-8") + b"\n"
    if isinstance(exc, errors.StaleSizeError):
        return 409, SIZE_CONTENT_TYPE, f"{exc.current_size}\n".encode()
    if isinstance(exc, errors.SplitViewError):
        return 409, "text/plain; charset=utf-8", message
    if isinstance(exc, errors.NotFoundError):
        return 404, "text/plain; charset=utf-8", message
    if isinstance(exc, errors.SignatureMismatchError):
        return 403, "text/plain; charset=utf-8", message
    if isinstance(exc, errors.ProofError):
        return 422, "text/plain; charset=utf-8", message
    if isinstance(exc, errors.InputError):
        return 400, "text/plain; charset=utf-8", message
    return 500, "text/plain; charset=utf-8", message


SERVER_FAULT = b"the witness cannot answer now; its operator will find why in the server log\n"


def handle_add_checkpoint(
    service: WitnessService, body: bytes, log: Callable[[str], None] | None = None
) -> WitnessResponse:
    """One `add-checkpoint` call, as the HTTP edge answers it (also used by in-process tests).
    A fault of the witness itself (500: its state unreadable, an internal error) is told to the
    client without detail (it would name server paths); the detail goes to `log`."""
    try:
        cosigned = service.add_checkpoint(body)
    except errors.ModelwardError as exc:
        status, content_type, payload = _status_for(exc)
        if status == 500:
            _log_fault(log, f"{type(exc).__name__}: {exc}")
            payload = SERVER_FAULT
        return WitnessResponse(status, content_type, payload)
    except Exception as exc:  # never a traceback to the client; the operator sees it logged
        _log_fault(log, f"internal error: {type(exc).__name__}: {exc}")
        return WitnessResponse(500, "text/plain; charset=utf-8", SERVER_FAULT)
    return WitnessResponse(200, "text/plain; charset=utf-8", cosigned.lines.encode("utf-8"))


def _log_fault(log: Callable[[str], None] | None, message: str) -> None:
    (log or stderr_log)(f"cannot answer add-checkpoint: {message}")


class WitnessHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog of 5 drops connections when a registry and its
    # peers call at once; requests queue on the witness's lock instead
    request_queue_size = LISTEN_BACKLOG

    def __init__(
        self, address: tuple[str, int], service: WitnessService, log: Callable[[str], None]
    ) -> None:
        super().__init__(address, _Handler)
        self.service = service
        self.log = log


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server: WitnessHTTPServer

    def do_POST(self) -> None:
        if self.path.split("?", 1)[0] != "/add-checkpoint":
            self._reply(WitnessResponse(404, "text/plain", b"unknown endpoint\n"))
            return
        length_text = self.headers.get("Content-Length")
        if length_text is None or not length_text.isdigit():
            self._reply(WitnessResponse(411, "text/plain", b"Content-Length required\n"))
            return
        length = int(length_text)
        if length > MAX_REQUEST_BYTES:
            self.close_connection = True
            self._reply(WitnessResponse(413, "text/plain", b"request body too large\n"))
            return
        body = self.rfile.read(length)
        response = handle_add_checkpoint(self.server.service, body, self.server.log)
        self.server.log(
            f"add-checkpoint from {self.client_address[0]}: {response.status} "
            f"{response.body.decode('utf-8', 'replace').strip()[:200]}"
        )
        self._reply(response)

    def do_GET(self) -> None:
        if self.path != "/":
            self._reply(WitnessResponse(404, "text/plain", b"unknown endpoint\n"))
            return
        key = self.server.service.key
        self._reply(WitnessResponse(200, "text/plain", f"{key.name}\n{key.vkey()}\n".encode()))

    def _reply(self, response: WitnessResponse) -> None:
        self.send_response(response.status)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        self.wfile.write(response.body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # requests are logged with their outcome in do_POST


def stderr_log(message: str) -> None:
    sys.stderr.write(f"modelward witness: {message}\n")
    sys.stderr.flush()


def http_transport(timeout: float = 10.0) -> Callable[[str, bytes], WitnessResponse]:
    """POST a body to a witness URL. An unreachable witness is answered as status 0 with the
    reason, so one bad witness does not stop the others from being asked."""

    def post(url: str, body: bytes) -> WitnessResponse:
        request = urllib.request.Request(
            url, data=body, method="POST", headers={"Content-Type": "text/plain"}
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as reply:
                return WitnessResponse(
                    reply.status,
                    reply.headers.get_content_type(),
                    reply.read(MAX_REQUEST_BYTES + 1),
                )
        except urllib.error.HTTPError as exc:
            return WitnessResponse(
                exc.code, exc.headers.get_content_type(), exc.read(MAX_REQUEST_BYTES + 1)
            )
        except (urllib.error.URLError, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", exc)
            return WitnessResponse(0, "text/plain", f"unreachable: {reason}".encode())

    return post
