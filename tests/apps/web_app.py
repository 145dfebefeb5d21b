"""Unchanged Beam web apps used by the serve-bridge tests (``from beam import …`` under the drop-in)."""

import asyncio
import os
import time

from beamray import QueueDepthAutoscaler, asgi, endpoint, realtime


def load_model():
    return {"model": "loaded", "pid": os.getpid()}


@endpoint(name="multiply", cpu=0.1, authorized=True)
def multiply(**inputs):
    return {"result": inputs["x"] * 2}


@endpoint(name="ctx", cpu=0.1, on_start=load_model)
def with_context(x: int = 0, context=None):
    return {"x": x, "on_start": context.on_start_value["model"], "task_id": context.task_id,
            "container": os.environ.get("CONTAINER_ID", "")}


@endpoint(name="asyncep", cpu=0.1)
async def async_handler(delay: float = 0.0):
    await asyncio.sleep(delay)
    return {"async": True}


@endpoint(name="stream", cpu=0.1)
def streamer(n: int = 3):
    for i in range(int(n)):
        yield {"i": i}


@endpoint(name="public", cpu=0.1, authorized=False)
def public_handler():
    return {"public": True}


def failing_start():
    raise RuntimeError("on_start exploded")


@endpoint(name="badstart", cpu=0.1, on_start=failing_start, autoscaler=QueueDepthAutoscaler(min_containers=1))
def bad_start():
    return {}


@endpoint(name="pid", cpu=0.1, keep_warm_seconds=2,
          autoscaler=QueueDepthAutoscaler(min_containers=0, max_containers=2, tasks_per_container=1))
def pid_handler(delay: float = 0.0):
    time.sleep(delay)
    return {"pid": os.getpid()}


@asgi(name="webapp", cpu=0.1, concurrent_requests=4)
def web_server(context):
    from fastapi import FastAPI

    app = FastAPI()
    items = {}

    @app.get("/items/{item_id}")
    def get_item(item_id: str):
        return {"id": item_id, "value": items.get(item_id)}

    @app.put("/items/{item_id}")
    def put_item(item_id: str, body: dict):
        items[item_id] = body["value"]
        return {"stored": item_id}

    @app.delete("/items/{item_id}")
    def delete_item(item_id: str):
        return {"deleted": items.pop(item_id, None) is not None}

    @app.post("/echo")
    def echo(body: dict):
        return body

    return app


@realtime(name="echo", cpu=0.1, authorized=False)
def echo(event):
    return {"response": event}


@endpoint(name="sturdy", cpu=0.1, autoscaler=QueueDepthAutoscaler(min_containers=2, max_containers=2))
def sturdy():
    return {"pid": os.getpid()}
