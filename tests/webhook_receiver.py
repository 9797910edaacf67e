"""A webhook receiver as a customer would run one: a real HTTP server that checks every delivery's
signature with the `standardwebhooks` package, and answers from a script (status, headers)."""

from __future__ import annotations

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
