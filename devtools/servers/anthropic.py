"""A local server speaking the Anthropic Messages protocol."""

from __future__ import annotations

import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from devtools.servers.base import ProtocolServer, default_message, sse


class AnthropicServer(ProtocolServer):
    """POST /v1/messages, streamed as named server-sent events ending in `message_stop`."""

    path = "/v1/messages"
    finish_words = {"end": "end_turn", "length": "max_tokens", "refusal": "refusal"}
    # From API version 2026-10-21 on, the Messages API refuses sampling parameters.
    SAMPLING = ("temperature", "top_p", "top_k")

    def check(self, h: BaseHTTPRequestHandler, body: dict) -> tuple[int, str] | None:
        # The API takes the key as x-api-key or as a bearer token (what the 2.x SDKs send).
        sent = h.headers.get("x-api-key") or (h.headers.get("Authorization") or "").removeprefix("Bearer ")
        if not sent:
            return 401, "x-api-key header is required"
        if self.api_key is not None and sent != self.api_key:
            return 401, "invalid x-api-key"
        version = h.headers.get("anthropic-version")
        if not version:
            return 400, "anthropic-version: header is required"
        for name in ("model", "messages", "max_tokens"):
            if name not in body:
                return 400, f"{name}: Field required"
        if version >= "2026-10-21":
            for name in self.SAMPLING:
                if name in body:
                    return 400, f"{name}: Extra inputs are not permitted"
        # The API refuses a conversation holding a blank text message, as it was sent back.
        for i, message in enumerate(body["messages"]):
            content = message.get("content") if isinstance(message, dict) else None
            blocks = [content] if isinstance(content, str) else [b.get("text", "") for b in content or []
                                                                 if isinstance(b, dict) and b.get("type") == "text"]
            if any(not str(text).strip() for text in blocks):
                return 400, f"messages.{i}: text content blocks must contain non-whitespace text"
        return None

    def error_body(self, status: int, message: str | None = None) -> Any:
        kind = {
            400: "invalid_request_error", 401: "authentication_error", 403: "permission_error",
            404: "not_found_error", 413: "request_too_large", 429: "rate_limit_error", 529: "overloaded_error",
        }.get(status, "api_error")
        return {"type": "error", "error": {"type": kind, "message": message or default_message(status)},
                "request_id": f"req_{uuid.uuid4().hex[:24]}"}

    def stream_frames(self, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        input_tokens, output_tokens = self.expected_usage(body)
        message = {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model"), "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        }
        head = [
            sse({"type": "message_start", "message": message}, "message_start"),
            sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                 "content_block_start"),
            sse({"type": "ping"}, "ping"),
        ]
        tokens = [
            sse({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}},
                 "content_block_delta")
            for piece in self.pieces
        ]
        tail = [
            sse({"type": "content_block_stop", "index": 0}, "content_block_stop"),
            sse({"type": "message_delta", "delta": {"stop_reason": self.finish_words[self.finish],
                                                     "stop_sequence": None},
                  "usage": {"output_tokens": output_tokens}}, "message_delta"),
            sse({"type": "message_stop"}, "message_stop"),
        ]
        return head, tokens, tail

    def stream_error_frame(self) -> bytes:
        # What the API sends when it runs out of capacity mid-generation.
        return sse({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}, "error")

    def full_response(self, body: dict) -> Any:
        input_tokens, output_tokens = self.expected_usage(body)
        return {
            "id": f"msg_{uuid.uuid4().hex[:24]}", "type": "message", "role": "assistant",
            "model": body.get("model"), "content": [{"type": "text", "text": self.reply}],
            "stop_reason": self.finish_words[self.finish], "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
        }
