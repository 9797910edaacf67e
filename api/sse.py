"""`EventStream`: sse-starlette's Server-Sent Events response, with the connection left to the server.

sse-starlette sets `Connection: keep-alive` on every stream (sse_starlette/sse.py, `EventSourceResponse.__init__`).
`Connection` is hop-by-hop (RFC 9110, section 7.6.1): it is the server's to manage, not the app's.
uvicorn adds `connection: close` itself when the client asked for it or the server is shutting down,
so a stream then carried both `keep-alive` and `close`; an HTTP/1.1 connection is persistent
without saying so. The stream keeps sse-starlette's other headers (`Cache-Control: no-store`,
`X-Accel-Buffering: no`, which asks nginx not to buffer it).
"""

from __future__ import annotations

from sse_starlette import EventSourceResponse


class EventStream(EventSourceResponse):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        del self.headers["connection"]
