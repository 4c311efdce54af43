"""A local HTTP endpoint that forwarded changes are POSTed to: it keeps each request,
can answer an error status for a while, answer slowly, or be down (not listening)."""

from __future__ import annotations

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson
from standardwebhooks.webhooks import Webhook

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


class Receiver:
    """An endpoint on a free loopback port: ``url``, the requests it took (``got``),
    ``status`` to answer, ``delay`` seconds to wait before answering."""

    def __init__(self, status: int = 200, delay: float = 0.0) -> None:
        self.status = status
        self.delay = delay
        self.got: list[tuple[dict[str, str], bytes]] = []
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                time.sleep(receiver.delay)
                status = receiver.status
                if 200 <= status < 300:
                    with receiver.lock:
                        receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self._handler = Handler
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks"
        self._thread: threading.Thread | None = None
        self.start()

    def start(self) -> None:
        """Listen (again, on the same port)."""
        if self._thread is None:
            if self._server.socket.fileno() < 0:
                self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler)
            self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop listening: connections are refused."""
        if self._thread is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join()
            self._thread = None

    def messages(self, secret: str = SECRET) -> list[dict[str, Any]]:
        """Each request's message, its signature verified (raises when one is not), with
        its ``webhook-id`` under ``"id"``."""
        hook = Webhook(secret)
        with self.lock:
            got = list(self.got)
        out = []
        for headers, body in got:
            message: dict[str, Any] = hook.verify(body, headers)
            assert message == orjson.loads(body)
            out.append({**message, "id": headers["webhook-id"]})
        return out
