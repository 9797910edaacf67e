"""A local server speaking the OpenAI chat completions protocol."""

from __future__ import annotations

import json
import time
import uuid
from http.server import BaseHTTPRequestHandler
from typing import Any

from devtools.servers.base import ProtocolServer, default_message, sse

# Models that refuse `max_tokens` and any temperature but 1, as the real API does (o-series and the
# gpt-5 family; kept apart from the product's own table on purpose, so a test can catch it wrong).
REASONING_PREFIXES = ("o1", "o3", "o4-mini", "gpt-5")


def reasoning_model_problem(body: dict) -> tuple[int, str, str, str] | None:
    """The 400 the real API answers a reasoning model's request with, for `max_tokens` or a temperature."""
    model = str(body.get("model") or "")
    if not model.startswith(REASONING_PREFIXES):
        return None
    if "max_tokens" in body:
        return (400, "Unsupported parameter: 'max_tokens' is not supported with this model. "
                "Use 'max_completion_tokens' instead.", "max_tokens", "unsupported_parameter")
    temperature = body.get("temperature")
    if temperature is not None and temperature != 1:
        return (400, f"Unsupported value: 'temperature' does not support {json.dumps(temperature)} with this "
                "model. Only the default (1) value is supported.", "temperature", "unsupported_value")
    return None


class OpenAIServer(ProtocolServer):
    """POST /v1/chat/completions, streamed as server-sent events ending in `data: [DONE]`."""

    path = "/v1/chat/completions"
    # A refusal ends with "stop": what marks it is its text, sent in the `refusal` field.
    finish_words = {"end": "stop", "length": "length", "refusal": "stop", "content_filter": "content_filter"}
    # False: a compatible server that ignores `stream_options` and never reports the tokens it used.
    reports_usage = True

    @property
    def base_url(self) -> str:
        return self.root_url + "/v1"

    def check(self, h: BaseHTTPRequestHandler, body: dict) -> tuple[int, str] | None:
        if self.api_key is not None:
            sent = (h.headers.get("Authorization") or "").removeprefix("Bearer ")
            if sent != self.api_key:
                # The real API echoes a redacted fragment of a wrong key.
                shown = f"{sent[:3]}*****{sent[-4:]}" if len(sent) > 8 else "*****"
                return 401, f"Incorrect API key provided: {shown}. You can find your API key in your account settings."
        for name in ("model", "messages"):
            if name not in body:
                return 400, f"Missing required parameter: '{name}'."
        return reasoning_model_problem(body)

    def error_body(self, status: int, message: str | None = None, param: str | None = None,
                   code: str | None = None) -> Any:
        if code is not None:  # a refused parameter: the API names it and says why
            return {"error": {"message": message, "type": "invalid_request_error", "param": param, "code": code}}
        kind, code = {
            400: ("invalid_request_error", None),
            401: ("invalid_request_error", "invalid_api_key"),
            403: ("invalid_request_error", "unsupported_country_region_territory"),
            404: ("invalid_request_error", "model_not_found"),
            429: ("requests", "rate_limit_exceeded"),
        }.get(status, ("server_error", None))
        return {"error": {"message": message or default_message(status), "type": kind, "param": None, "code": code}}

    def _usage(self, body: dict) -> dict[str, int]:
        prompt, completion = self.expected_usage(body)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def stream_frames(self, body: dict) -> tuple[list[bytes], list[bytes], list[bytes]]:
        cid, created, model = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time()), body.get("model")
        include_usage = self.reports_usage and bool((body.get("stream_options") or {}).get("include_usage"))
        # With include_usage every chunk carries "usage": null until the last one.
        extra = {"usage": None} if include_usage else {}

        def chunk(delta: dict, finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            return sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                         "system_fingerprint": "fp_local", "choices": [choice], **extra})

        head = [chunk({"role": "assistant", "content": "", "refusal": None})]
        field = "refusal" if self.finish == "refusal" else "content"
        tokens = [chunk({field: piece}) for piece in self.pieces]
        tail = [chunk({}, self.finish_words[self.finish])]
        if include_usage:
            tail.append(sse({"id": cid, "object": "chat.completion.chunk", "created": created, "model": model,
                              "system_fingerprint": "fp_local", "choices": [], "usage": self._usage(body)}))
        tail.append(b"data: [DONE]\n\n")
        return head, tokens, tail

    def stream_error_frame(self) -> bytes:
        return sse(self.error_body(500))

    def full_response(self, body: dict) -> Any:
        refused = self.finish == "refusal"
        message = {"role": "assistant", "content": None if refused else self.reply,
                   "refusal": self.reply if refused else None}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model"), "system_fingerprint": "fp_local",
            "choices": [{"index": 0, "message": message, "logprobs": None,
                         "finish_reason": self.finish_words[self.finish]}],
            "usage": self._usage(body),
        }
