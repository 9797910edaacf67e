"""A webhook receiver as a customer would run one: a real HTTP server that checks every delivery's
signature with the `standardwebhooks` package, and answers from a script (status, headers)."""

from __future__ import annotations

import socket
import threading
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError


class Receiver:
    """`with Receiver(secret) as r:` serves on r.url; r.verified holds the verified payloads, r.rejected the rest."""

    def __init__(self, secret: str = "", answers: list[tuple[int, dict]] | None = None):
        self.secret = secret
        self.answers: deque[tuple[int, dict]] = deque(answers or [])  # served in order, then 204
        self.verified: list[dict] = []
        self.headers: list[dict] = []
        self.rejected: list[str] = []
        self.seen = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/hooks"

    def __enter__(self) -> "Receiver":
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.seen += 1
                headers = {k.lower(): v for k, v in self.headers.items()}
                owner.headers.append(headers)
                try:
                    payload = Webhook(owner.secret).verify(body, headers)
                except WebhookVerificationError as exc:
                    owner.rejected.append(str(exc))
                    return self._answer(400, {})
                status, extra = owner.answers.popleft() if owner.answers else (204, {})
                if 200 <= status < 300:
                    owner.verified.append(payload)
                self._answer(status, extra)

            def _answer(self, status: int, extra: dict) -> None:
                self.send_response(status)
                for name, value in extra.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class SlowReceiver:
    """`with SlowReceiver() as r:` a receiver on r.url that answers every POST "500", then trickles the
    1000 bytes of body it announced one every `every` seconds: each read gets a byte well within any
    per-read timeout, and the whole answer takes minutes. r.seen counts the requests."""

    def __init__(self, every: float = 0.5):
        self.every = every
        self.seen = 0
        self._stop = threading.Event()
        self._socket = socket.create_server(("127.0.0.1", 0))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._socket.getsockname()[1]}/hooks"

    def __enter__(self) -> "SlowReceiver":
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed on exit
                return
            threading.Thread(target=self._trickle, args=(connection,), daemon=True).start()

    def _trickle(self, connection: socket.socket) -> None:
        with connection:
            connection.recv(65536)
            self.seen += 1
            try:
                connection.sendall(b"HTTP/1.1 500 Slow\r\nContent-Length: 1000\r\n\r\n")
                for _ in range(1000):
                    if self._stop.wait(self.every):
                        return
                    connection.sendall(b"x")
            except OSError:  # the client gave up
                pass

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._socket.close()
