"""A bare FastAPI app, the floor the API benchmark measures against: a pydantic POST and a one-event SSE stream."""

from __future__ import annotations

from fastapi import FastAPI
from pydantic import BaseModel
from sse_starlette import EventSourceResponse

app = FastAPI()


class Body(BaseModel):
    text: str


@app.post("/bare")
def bare(body: Body) -> dict:
    return {"text": body.text}


@app.post("/bare/stream")
def bare_stream(body: Body) -> EventSourceResponse:
    async def events():
        yield {"event": "meta", "data": body.text, "id": "1"}

    return EventSourceResponse(events())
