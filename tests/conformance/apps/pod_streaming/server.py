"""A small server for the pod: GET /stream streams lines, POST /echo echoes the body, /ws echoes messages."""

import asyncio

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import StreamingResponse
import uvicorn

app = FastAPI()


@app.get("/stream")
async def stream():
    async def lines():
        for number in range(5):
            yield f"line {number}\n"
            await asyncio.sleep(0.2)

    return StreamingResponse(lines(), media_type="text/plain")


@app.post("/echo")
async def echo(request: Request):
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
    return {"received": size}


@app.websocket("/ws")
async def ws(socket: WebSocket):
    await socket.accept()
    while True:
        message = await socket.receive_text()
        await socket.send_text(f"echo: {message}")


if __name__ == "__main__":
    uvicorn.run(app, host="0.0.0.0", port=8080, log_level="warning")
