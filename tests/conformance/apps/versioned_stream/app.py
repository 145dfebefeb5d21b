# Docs: Hosting a Web Server (@asgi with FastAPI), with a StreamingResponse, deployed twice: its version
# is read from version.txt, which the test changes between the deploys.
import os
import time
from pathlib import Path

from beam import Image, asgi

VERSION = Path("version.txt").read_text().strip()


@asgi(name="versions", image=Image().add_python_packages(["fastapi"]), cpu=0.1)
def web_server():
    from fastapi import FastAPI
    from fastapi.responses import StreamingResponse

    app = FastAPI()

    @app.get("/version")
    async def version():
        return {"version": VERSION}

    @app.get("/stream")
    def stream(marker: str):
        def chunks():
            yield "first\n"
            deadline = time.monotonic() + 20
            while not os.path.exists(marker) and time.monotonic() < deadline:
                time.sleep(0.05)  # the client writes the marker once it has read the first chunk
            yield "second\n" if os.path.exists(marker) else "the first chunk never reached the client\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    return app
