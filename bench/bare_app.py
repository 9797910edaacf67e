"""The baseline of the HTTP benchmarks: a bare FastAPI endpoint that reads the body and answers."""

from fastapi import FastAPI, Request

app = FastAPI()


@app.post("/bare")
async def bare(request: Request) -> dict:
    await request.body()
    return {"status": "ok"}
