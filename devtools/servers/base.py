"""The shared scriptable HTTP server: request recording, failure modes and streaming, whatever the protocol."""

from __future__ import annotations

import json
import re
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterable

DEFAULT_REPLY = "Thanks for getting in touch! Refunds reach your card within 5 to 7 working days."

# A failure mode: an HTTP status (401, 429, 500, ...); "hang": answer nothing for
# `hang_seconds`; "cut": send `cut_after` pieces (default half), then close without the
# end marker; "stream_error": send `cut_after` pieces (default none), then the protocol's
# in-stream error and end the body, as a provider does when it fails mid-generation.
Failure = int | str
MODES = ("hang", "cut", "stream_error")
# How a complete reply ends, in the product's words; each protocol sends its own word for it:
# "end" (the model's answer is complete), "length" (cut off at max_tokens), "refusal" (the model
# declines; OpenAI sends the pieces as refusal text), "content_filter" (OpenAI's filter stops it).
FINISHES = ("end", "length", "refusal", "content_filter")


def split_reply(text: str) -> list[str]:
    """Split text into word pieces that join back to exactly the text."""
    return re.findall(r"\S+\s*|\s+", text)


@dataclass
class RecordedRequest:
    """One request as the server received it."""

    method: str
    path: str
    headers: dict[str, str]  # names in lower case
    body: Any  # the parsed JSON body, or None
    received_at: float  # time.monotonic()


def _checked(modes: Iterable[Failure]) -> list[Failure]:
    modes = list(modes)
    for mode in modes:
        if not (isinstance(mode, int) and 400 <= mode <= 599) and mode not in MODES:
            raise ValueError(f"unknown failure mode {mode!r}: an HTTP error status or one of {MODES}")
    return modes


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked streaming, as the SDKs expect
    # Small frames go out at once, as from a real server; with Nagle's algorithm on, a
    # frame can wait ~40 ms for the client's delayed ACK and skew time-to-first-token.
    disable_nagle_algorithm = True
    timeout = 30  # an idle keep-alive connection ends on its own
    server: "_HTTPServer"

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self.server.owner._handle(self)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (its timeout, say): nothing left to answer.
            self.close_connection = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # tests and benchmarks read the record, not stderr


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    owner: "ProtocolServer"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client dropping its connection (a timeout, a closed pool) is routine here.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class ProtocolServer:
    """A scriptable local server for one provider's protocol; use it as a context manager.

    `reply` may be blank ("\n\n") or empty (a stream with no text at all); `finish` says how a
    complete reply ends (see FINISHES).
    """

    path = "/"
    content_type = "text/event-stream"
    banner = "ok"
    # The protocol's stop reason for each of FINISHES it can send.
    finish_words: dict[str, str] = {"end": "stop"}

    def __init__(
        self,
        reply: str | Iterable[str] = DEFAULT_REPLY,
        *,
        failures: Iterable[Failure] = (),
        first_token_delay: float = 0.0,
        token_delay: float = 0.0,
        hang_seconds: float = 30.0,
        retry_after: float = 0.0,
        usage: tuple[int, int] | None = None,
        api_key: str | None = None,
        framing: str = "chunked",
        cut_after: int | None = None,
        finish: str = "end",
        port: int = 0,
    ):
        if framing not in ("chunked", "close"):
            raise ValueError("framing is 'chunked' or 'close'")
        if finish not in self.finish_words:
            raise ValueError(f"{type(self).__name__} cannot end a reply with {finish!r}: "
                             f"one of {tuple(self.finish_words)}")
        self.finish = finish
        self.pieces = split_reply(reply) if isinstance(reply, str) else list(reply)
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.hang_seconds = hang_seconds
        self.retry_after = retry_after
        self.usage = usage
        self.api_key = api_key
        self.framing = framing
        self.cut_after = cut_after
        self.requests: list[RecordedRequest] = []
        self._failures: deque[Failure] = deque(_checked(failures))
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._port = port
        self._httpd: _HTTPServer | None = None

    # -- scripting and inspection

    @property
    def reply(self) -> str:
        """The whole scripted reply."""
        return "".join(self.pieces)

    def fail(self, *modes: Failure) -> None:
        """Queue failure modes, served one per request before the next success."""
        with self._lock:
            self._failures.extend(_checked(modes))

    @property
    def last(self) -> RecordedRequest:
        """The most recent request."""
        return self.requests[-1]

    @property
    def root_url(self) -> str:
        """http://127.0.0.1:PORT, without a path."""
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def base_url(self) -> str:
        """The URL to give the provider's SDK as its base URL or host."""
        return self.root_url

    def expected_usage(self, body: Any) -> tuple[int, int]:
        """(input, output) tokens reported for a request: the scripted pair, else an estimate."""
        if self.usage is not None:
            return self.usage
        return len(self.prompt_text(body).split()), len(self.pieces)

    # -- lifecycle

    def start(self) -> "ProtocolServer":
        """Bind a free port on 127.0.0.1 and serve from a background thread."""
        self._stop.clear()
        self._httpd = _HTTPServer(("127.0.0.1", self._port), _Handler)
        self._httpd.owner = self
        # A short poll interval so that stopping takes milliseconds, not half a second.
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop serving; wakes any request that is hanging or waiting to send."""
        self._stop.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> "ProtocolServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- request handling shared by every protocol

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    h.command, h.path, {k.lower(): v for k, v in h.headers.items()}, body, time.monotonic()
                )
            )
        if h.command == "GET":  # a health check
            status, text = (200, self.banner) if h.path == "/" else (404, "404 page not found")
            return self._send(h, status, text.encode(), "text/plain; charset=utf-8")
        if h.path.split("?")[0] != self.path:
            return self._send_error(h, 404, f"Unknown path {h.path}")
        if not isinstance(body, dict):
            return self._send_error(h, 400, "The request body is not valid JSON.")
        problem = self.check(h, body)
        if problem is not None:
            return self._send_error(h, *problem)
        with self._lock:
            mode = self._failures.popleft() if self._failures else None
        if isinstance(mode, int):
            return self._send_error(h, mode)
        if mode == "hang":
            # Answer nothing, as a stuck upstream does; stopping the server wakes it.
            self._stop.wait(self.hang_seconds)
            h.close_connection = True
            return
        if not self.streams(body):
            if mode == "cut":
                h.close_connection = True  # the connection drops before any answer
                return
            if mode == "stream_error":
                return self._send_error(h, 500)
            return self._send(h, 200, json.dumps(self.full_response(body)).encode(), "application/json")
        self._stream(h, body, mode)

    def _stream(self, h: BaseHTTPRequestHandler, body: dict, mode: Failure | None) -> None:
        head, tokens, tail = self.stream_frames(body)
        chunked = self.framing == "chunked"

        def write(data: bytes) -> None:
            if data:  # an empty chunk would end a chunked body
                h.wfile.write(b"%X\r\n%s\r\n" % (len(data), data) if chunked else data)
                h.wfile.flush()

        h.send_response(200)
        h.send_header("Content-Type", self.content_type)
        h.send_header("Cache-Control", "no-cache")
        h.send_header(*(("Transfer-Encoding", "chunked") if chunked else ("Connection", "close")))
        h.end_headers()
        # Closing the connection ends a close-framed body; a chunked one it leaves broken.
        h.close_connection = True
        write(b"".join(head))
        if self.first_token_delay and self._stop.wait(self.first_token_delay):
            return
        keep = len(tokens)
        if mode == "cut":
            keep = self.cut_after if self.cut_after is not None else len(tokens) // 2
        elif mode == "stream_error":
            keep = self.cut_after or 0
        for i, frame in enumerate(tokens[:keep]):
            if i and self.token_delay and self._stop.wait(self.token_delay):
                return
            write(frame)
        if mode == "cut":
            return
        write(self.stream_error_frame() if mode == "stream_error" else b"".join(tail))
        if chunked:
            h.wfile.write(b"0\r\n\r\n")
            h.close_connection = False  # a complete chunked body keeps the connection alive

    def _send(self, h: BaseHTTPRequestHandler, status: int, data: bytes, content_type: str,
              headers: dict[str, str] | None = None) -> None:
        h.send_response(status)
        for name, value in {"Content-Type": content_type, "Content-Length": str(len(data)), **(headers or {})}.items():
            h.send_header(name, value)
        h.end_headers()
        h.wfile.write(data)

    def _send_error(self, h: BaseHTTPRequestHandler, status: int, message: str | None = None, *detail: Any) -> None:
        # `detail`: what a protocol's check adds to its error body (OpenAI's `param` and `code`).
        headers = {"Retry-After": f"{self.retry_after:g}"} if status == 429 else {}
        body = self.error_body(status, message, *detail)
        self._send(h, status, json.dumps(body).encode(), "application/json", headers)

    # -- what each protocol defines

    def prompt_text(self, body: Any) -> str:
        """All the prompt text in a request body (for the token estimate)."""
        if not isinstance(body, dict):
            return ""
        parts = [str(body.get("system") or "")]
        parts += [str(m.get("content") or "") for m in body.get("messages") or [] if isinstance(m, dict)]
        return " ".join(parts)

    def streams(self, body: dict) -> bool:
        return bool(body.get("stream", False))

    def check(self, h: BaseHTTPRequestHandler, body: dict) -> tuple | None:
        """Authentication and validation: (status, message, *detail for error_body) to refuse, else None."""
        return None

    # Each protocol also defines: error_body(status, message) -> JSON error; stream_frames(body)
    # -> (frames before the first token, one frame per piece, closing frames);
    # stream_error_frame() -> the error sent inside a failing stream; full_response(body).


def sse(data: Any, event: str | None = None) -> bytes:
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {json.dumps(data)}\n\n".encode()


def default_message(status: int) -> str:
    return {400: "The request is not valid.", 401: "The API key is not valid.", 403: "Forbidden.",
            404: "Not found.", 429: "Rate limit reached: too many requests, slow down.",
            500: "The server had an error while processing your request.", 529: "Overloaded."
            }.get(status, f"HTTP {status}")
