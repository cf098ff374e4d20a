"""A small but real SMS gateway for tests: an HTTP server on a spare port that delivers each
idempotency key once, as a gateway honouring `Idempotency-Key` does."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class Gateway:
    """Counts requests and deliveries; can fail its first requests (503), reject all (400), hold the
    first request after delivering it (until `release` is set), or answer slowly."""

    def __init__(
        self, *, fail_first: int = 0, reject: bool = False, hold_first: bool = False, delay_s: float = 0.0
    ) -> None:
        self.fail_left = fail_first
        self.reject = reject
        self.hold_first = hold_first
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []  # {"key", "headers", "body"}
        self.delivered: dict[str, str] = {}  # idempotency key -> message id
        self.received = threading.Event()  # the held request has arrived (and was delivered)
        self.release = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_port}/send"

    def deliveries(self) -> int:
        return len(self.delivered)

    def _answer(
        self, key: str | None, headers: dict[str, str], body: Any
    ) -> tuple[int, dict[str, Any], bool]:
        with self._lock:
            self.requests.append({"key": key, "headers": headers, "body": body})
            if self.fail_left > 0:
                self.fail_left -= 1
                return 503, {"error": "try later"}, False
            if self.reject:
                return 400, {"error": "invalid number"}, False
            hold = self.hold_first and not self.delivered
            key = key or f"unkeyed-{len(self.requests)}"  # a sender without keys: each one a new SMS
            message_id = self.delivered.setdefault(key, f"GW{len(self.delivered) + 1}")
            return 200, {"message_id": message_id, "status": "accepted"}, hold

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = raw.decode()
                status, answer, hold = gateway._answer(
                    self.headers.get("Idempotency-Key"), dict(self.headers.items()), body
                )
                if hold:  # delivered; the sender may be gone before it hears so
                    gateway.received.set()
                    gateway.release.wait(30)
                if gateway.delay_s:
                    time.sleep(gateway.delay_s)
                data = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except OSError:
                    pass  # the client went away

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    @contextmanager
    def running(self) -> Iterator[Gateway]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self.release.set()
            self._server.shutdown()
            self._server.server_close()
