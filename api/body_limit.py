"""Request body caps: FastAPI's `max_body_size` counts every body; this module only words its refusal.

The caps are FastAPI's own (Starlette's RequestBodyLimitMiddleware under `max_body_size`): a body
is counted as it arrives, with or without a `Content-Length` (chunked), and the answer, a stream
included, is left alone. `MAX_BODY_BYTES` on every router (api/app.py gives it to
`include_router`), 21 MB on the batch upload (its 20 MB file and the multipart framing), 1 MB
on Chatwoot's webhook (api/webhooks_in.py). A body counted over its cap raises an HTTPException
413, which api/errors.py answers in the API's shape.

What the library does not do is let the app word one refusal: a request that declares a
`Content-Length` over the cap is answered with Starlette's own `text/plain` "Content Too Large",
whatever the app sent (starlette/middleware/body_limit.py, `send_with_limit`; measured on uvicorn
with a 5 MB `/v1/chat` and `/v1/integrations/chatwoot`: 413, `text/plain; charset=utf-8`, body
"Content Too Large"). `RefusalInOurShape` answers that one in the API's JSON shape, naming the cap.
It needs the caps set on the routers, not on `FastAPI(...)`: the app-wide cap's answer is sent
outside every middleware the app adds, where nothing can reword it.
"""

from __future__ import annotations

from api import errors

MAX_BODY_BYTES = 4_000_000  # a turn is at most 4,000 characters; an OpenAI client also sends the history


def _is_starlettes_refusal(message) -> bool:
    headers = dict(message.get("headers", []))
    return message["status"] == 413 and headers.get(b"content-type", b"").startswith(b"text/plain")


class RefusalInOurShape:
    """ASGI middleware: Starlette's plain-text 413 becomes the API's JSON `request_too_large`."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        replaced = False

        async def sending(message):
            nonlocal replaced
            if message["type"] == "http.response.start" and _is_starlettes_refusal(message):
                replaced = True
                # Read while the route's limiter still holds it in the scope (it is removed after).
                return await errors.response(errors.too_large(scope))(scope, receive, send)
            if not replaced:  # the replaced answer's own body is dropped
                await send(message)

        await self.app(scope, receive, sending)
