"""A local server speaking the Ollama chat protocol."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler
from typing import Any, Iterable

from devtools.servers.base import ProtocolServer, default_message


class OllamaServer(ProtocolServer):
    """POST /api/chat, streamed as JSON lines ending in one with `"done": true`."""

    path = "/api/chat"
    content_type = "application/x-ndjson"
    banner = "Ollama is running"
    finish_words = {"end": "stop", "length": "length"}

    def __init__(self, *args: Any, models: Iterable[str] | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        # The models "pulled" on this server; None accepts any name.
        self.models = set(models) if models is not None else None

    def streams(self, body: dict) -> bool:
        return bool(body.get("stream", True))  # Ollama streams unless told not to

    def check(self, h: BaseHTTPRequestHandler, body: dict) -> tuple[int, str] | None:
        if self.api_key is not None:
            if (h.headers.get("Authorization") or "") != f"Bearer {self.api_key}":
                return 401, "unauthorized"
        model = body.get("model")
        if not model:
            return 400, "model is required"
        if self.models is not None and model not in self.models:
            return 404, f"model '{model}' not found"
        return None

    def error_body(self, status: int, message: str | None = None) -> Any:
        return {"error": message or default_message(status)}

    def _line(self, body: dict, content: str, **extra: Any) -> bytes:
        created = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
        line = {"model": body.get("model"), "created_at": created,
                "message": {"role": "assistant", "content": content}, **extra}
        return (json.dumps(line) + "\n").encode()

    def _final(self, body: dict) -> dict[str, Any]:
        prompt, completion = self.expected_usage(body)
        return {"done": True, "done_reason": self.finish_words[self.finish], "total_duration": 1_000_000, "load_duration": 100_000,
                "prompt_eval_count": prompt, "prompt_eval_duration": 200_000,
                "eval_count": completion, "eval_duration": 700_000}

    def stream_frames(self, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        tokens = [self._line(body, piece, done=False) for piece in self.pieces]
        return [], tokens, [self._line(body, "", **self._final(body))]

    def stream_error_frame(self) -> bytes:
        return b'{"error":"an error was encountered while running the model: llama runner process has terminated"}\n'

    def full_response(self, body: dict) -> Any:
        return json.loads(self._line(body, self.reply, **self._final(body)))
