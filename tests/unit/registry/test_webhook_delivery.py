"""Webhook delivery against receivers on 127.0.0.1: a redirect is never followed (a 3xx is a
failed attempt, recorded with its status), and a receiver that drips its answer byte by byte
cannot hold an attempt past its total deadline."""

from __future__ import annotations

import functools
import http.server
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest

from modelward.services.alerts import AlertService, http_post

from .conftest import Registry

SECRET = b"0123456789abcdef0123"


class _Target(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []
    location: ClassVar[str] = ""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["Content-Length"]))
        if self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", type(self).location)
        else:
            type(self).hits.append(self.path)
            self.send_response(204)
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def target() -> Iterator[str]:
    _Target.hits = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Target)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    _Target.location = f"{base}/internal"
    try:
        yield base
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def dripping() -> Iterator[str]:
    """Reads the request, then answers one byte every 0.2 s, for ever."""
    listener = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                try:
                    conn.sendall(b"HTTP/1.1 200 OK\r\n")
                    while not stop.is_set():
                        conn.sendall(b"X")
                        time.sleep(0.2)
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}/hook"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


def test_a_redirect_is_not_followed_and_is_a_failed_delivery(
    registry: Registry, target: str
) -> None:
    assert http_post(f"{target}/redirect", b"{}", {}) == 302
    alerts = AlertService(registry.context, sleep=lambda s: None, attempts=2)
    alerts.add_webhook("ops", f"{target}/redirect", "k1", SECRET)
    report = alerts.send("canary.rollback", {"model": "llama"})
    assert report.delivered == 0 and report.failed == ["ops"]
    assert _Target.hits == []  # the internal address it pointed to was never asked
    rows = list(reversed(alerts.deliveries()))
    assert [(d["outcome"], d["http_status"]) for d in rows] == [("failed", 302), ("gave_up", 302)]


def test_a_dripping_receiver_cannot_hold_an_attempt_past_its_deadline(
    registry: Registry, dripping: str
) -> None:
    began = time.monotonic()
    with pytest.raises(TimeoutError, match="within 1 s"):
        http_post(dripping, b"{}", {}, deadline_s=1.0)
    assert time.monotonic() - began < 4
    alerts = AlertService(
        registry.context, post=functools.partial(http_post, deadline_s=1.0), attempts=1
    )
    alerts.add_webhook("slow", dripping, "k1", SECRET)
    began = time.monotonic()
    assert alerts.send("canary.rollback", {}).failed == ["slow"]
    assert time.monotonic() - began < 4
    (row,) = alerts.deliveries()
    assert row["outcome"] == "gave_up" and "TimeoutError" in row["error"]


def test_credentials_in_a_webhook_url_are_never_listed(registry: Registry, target: str) -> None:
    alerts = AlertService(registry.context, sleep=lambda s: None, attempts=1)
    url = target.replace("http://", "http://ops:hunter2@") + "/hook"
    assert "hunter2" not in str(alerts.add_webhook("ops", url, "k1", SECRET))
    (listed,) = alerts.webhooks()
    assert listed["url"] == target.replace("http://", "http://***@") + "/hook"
    assert alerts.send("canary.rollback", {}).delivered == 1  # still delivered with them
    from modelward.storage.metadata.ledger_repository import LedgerRepository

    with registry.context.database.read() as conn:  # nor written into the ledger (or evidence)
        ledger = LedgerRepository(conn)
        details = [ledger.event(seq).details_json for seq in range(ledger.size())]
    assert not any("hunter2" in d for d in details)
