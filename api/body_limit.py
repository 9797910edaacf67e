"""A cap on request bodies, checked before anything reads them.

FastAPI reads and parses a request's body before it runs the key check (a dependency), so
without a cap anyone, keyless, could make the server hold and parse a body of any size. Plain
ASGI, so streamed answers are left alone: a `Content-Length` over the cap is refused at once,
and a body sent without one (chunked) is counted as it arrives.
"""

from __future__ import annotations

import json

MAX_BODY_BYTES = 4_000_000  # a turn is at most 4,000 characters; an OpenAI client also sends the history
# A batch upload: its own 20 MB file limit (api/routes_classify.py) plus the multipart framing.
UPLOAD_BODY_BYTES = 21_000_000
UPLOAD_PATHS = ("/v1/triage/batch",)


class BodyTooLarge(Exception):
    pass


def limit_for(path: str) -> int:
    return UPLOAD_BODY_BYTES if path.rstrip("/") in UPLOAD_PATHS else MAX_BODY_BYTES


async def refuse(send, limit: int) -> None:
    """413 in the API's error shape."""
    message = f"The request body is over {limit:,} bytes."
    body = json.dumps({"error": {"type": "request_too_large", "code": "request_too_large",
                                 "message": message}}).encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit_for(path)` bytes."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        limit = limit_for(scope["path"])
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit() and int(declared) > limit:
            return await refuse(send, limit)
        seen, started, refused = 0, False, False

        async def counted():
            nonlocal seen, refused
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > limit and not refused:
                # Answer now: the app turns an error raised here into its own 400, which `sending` drops.
                refused = True
                if not started:
                    await refuse(send, limit)
                raise BodyTooLarge
            return message

        async def sending(message):
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, sending)
        except BodyTooLarge:
            pass  # answered with 413 in `counted`
