"""The HTTP gateway at ``/``: Beam's alias URLs, task queues, the task API, and 404s.

Each deployed web version is its own Serve application at ``/{kind}/{name}/v{N}``, reached by Serve's
proxy directly (no extra hop). The gateway catches what no version prefix matched: ``/{kind}/{name}``,
``…/latest``, ``/{kind}/id/{stub}``, ``/{kind}/public/{stub}`` (forwarded to the right version's replica
through a deployment handle: one extra hop, buffered responses); every ``/taskqueue/…`` URL (a POST
enqueues into the task service); and Beam's task API under ``/v2/task/``.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from ray import serve

from beamray.registry import DeploymentRecord, Registry
from beamray.exceptions import TaskQueueFullError
from beamray.serve_bridge.asgi import MAX_BODY_BYTES, PayloadError, parse_payload
from beamray.specs import QUEUED_KINDS, Kind

_KIND_NAMES = frozenset(kind.value for kind in Kind)

_CACHE_S = 1.0


def _json(status: int, body: Any) -> dict[str, Any]:
    return {"status": status, "headers": [(b"content-type", b"application/json")],
            "body": json.dumps(body).encode()}


class Routes:
    """Path → (record, path inside the deployment, public form?), from the registry with a short cache."""

    def __init__(self) -> None:
        self._registry = Registry()
        self._records: list[DeploymentRecord] = []
        self._at = 0.0

    def running(self, fresh: bool = False) -> list[DeploymentRecord]:
        if fresh or time.monotonic() - self._at > _CACHE_S:
            self._records = [r for r in self._registry.records() if r.status == "running"]
            self._at = time.monotonic()
        return self._records

    def resolve(self, path: str) -> tuple[DeploymentRecord | None, str, bool]:
        found = self._resolve(path)
        if found[0] is None and found[1]:  # maybe deployed within the cache period: look again
            self.running(fresh=True)
            found = self._resolve(path)
        return found

    def _resolve(self, path: str) -> tuple[DeploymentRecord | None, str, bool]:
        parts = [part for part in path.split("/") if part]
        if len(parts) < 2 or parts[0] not in _KIND_NAMES:
            return None, "", False
        kind, rest = parts[0], parts[1:]
        if rest[0] in ("id", "public") and len(rest) >= 2:
            matches = [r for r in self.running() if r.kind == kind and r.stub_id == rest[1]]
            record = matches[0] if matches else None
            if record is not None and rest[0] == "public" and record.authorized:
                record = None  # an authorized deployment has no public URL
            return record, "/" + "/".join(rest[2:]), rest[0] == "public"
        name, rest = rest[0], rest[1:]
        versions = [r for r in self.running() if r.kind == kind and r.name == name]
        if rest and rest[0] == "latest":
            rest = rest[1:]
        elif rest and rest[0].startswith("v") and rest[0][1:].isdigit():
            # Task queues live here. A web version's own URL reaches the gateway only while the ingress
            # catches up with a new version (HAProxy reloads after serve.run returns) or once the version
            # is stopped: look it up fresh, so that a stopped one answers 404.
            if kind not in QUEUED_KINDS:
                versions = [r for r in self.running(fresh=True) if r.kind == kind and r.name == name]
            versions = [r for r in versions if r.version == int(rest[0][1:])]
            rest = rest[1:]
        return (versions[-1] if versions else None), "/" + "/".join(rest), False


class GatewayApp:
    """Plain ASGI: bodies and headers pass to the deployment unchanged."""

    def __init__(self) -> None:
        from beamray import secrets
        from beamray.serve_bridge.replica import bearer_check

        self._routes = Routes()
        self._handles: dict[str, Any] = {}
        self._authorized = bearer_check(secrets.gateway_token())

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4404, "reason": "connect to /realtime/NAME/vN"})
            return
        path = scope["path"]
        if path.startswith("/output/id/") and scope["method"] == "GET":
            from beamray import outputs

            response = await asyncio.to_thread(outputs.http_response, path[len("/output/id/"):].strip("/"),
                                               scope.get("query_string", b""))
        elif path.startswith("/v2/task/"):
            if path.rstrip("/").endswith("/subscribe") and scope["method"] == "GET":
                await self._subscribe(scope, send)
                return
            response = await self._task_api(scope, receive)
        else:
            record, inner_path, public = self._routes.resolve(path)
            if record is None:
                response = _json(404, {"error": "not found"})
            elif record.kind in QUEUED_KINDS:
                response = await self._enqueue(record, inner_path, public, scope, receive)
            else:
                response = await self._forward(record, inner_path, scope, receive)
        await send({"type": "http.response.start", "status": response["status"], "headers": response["headers"]})
        await send({"type": "http.response.body", "body": response["body"]})

    def _auth_ok(self, scope: dict[str, Any]) -> bool:
        header = dict(scope.get("headers", [])).get(b"authorization")
        return self._authorized(header.decode("latin-1") if header else None)

    async def _body(self, receive: Any) -> bytes | None:
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if len(body) > MAX_BODY_BYTES:
                return None
            if not message.get("more_body"):
                return bytes(body)

    async def _forward(self, record: DeploymentRecord, path: str, scope: dict[str, Any], receive: Any
                       ) -> dict[str, Any]:
        body = await self._body(receive)
        if body is None:
            return _json(413, {"error": "payload too large"})
        handle = self._handles.get(record.app_name)
        if handle is None:
            handle = serve.get_app_handle(record.app_name).options(method_name="forward")
            self._handles[record.app_name] = handle
        request = {"method": scope["method"], "path": path, "query_string": scope.get("query_string", b""),
                   "headers": list(scope.get("headers", [])), "body": body}
        return await handle.remote(request)

    async def _enqueue(self, record: DeploymentRecord, path: str, public: bool, scope: dict[str, Any],
                       receive: Any) -> dict[str, Any]:
        from beamray.tasks import client

        if record.authorized and not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        if scope["method"] != "POST":
            return _json(405, {"error": "method not allowed"})
        body = await self._body(receive)
        if body is None:
            return _json(413, {"error": "payload too large"})
        if path.rstrip("/") == "/warmup":
            return {"status": 200, "headers": [], "body": b""}
        if path not in ("/", ""):
            return _json(404, {"error": "not found"})
        from urllib.parse import parse_qsl

        try:
            args, kwargs = parse_payload(body, parse_qsl(scope.get("query_string", b"").decode()))
        except PayloadError:
            return _json(400, {"error": "invalid request payload"})
        try:
            task_id = await client.service().submit.remote(record.app_name, args, kwargs)
        except Exception as exc:  # Ray wraps the service's error
            if isinstance(getattr(exc, "cause", None), TaskQueueFullError):
                return _json(429, {"error": str(exc.cause)})
            raise
        return _json(200, {"task_id": task_id})

    async def _task_api(self, scope: dict[str, Any], receive: Any) -> dict[str, Any]:
        from beamray.tasks import client

        if not self._auth_ok(scope):
            return _json(401, {"error": "Unauthorized"})
        parts = [part for part in scope["path"].split("/") if part]  # ["v2", "task", …]
        if parts[2:] == ["cancel"] and scope["method"] == "DELETE":
            body = await self._body(receive)
            try:
                task_ids = json.loads(body or b"{}")["task_ids"]
                if not isinstance(task_ids, list) or not all(isinstance(t, str) for t in task_ids):
                    raise ValueError
            except (ValueError, KeyError, TypeError):
                return _json(400, {"error": "invalid request payload"})
            await client.service().cancel.remote(task_ids)
            return _json(200, {})
        if len(parts) == 3 and scope["method"] == "GET":
            found = await client.service().get.remote(parts[2])
            return _json(404, {"error": "task not found"}) if found is None else _json(200, found)
        return _json(404, {"error": "not found"})

    async def _subscribe(self, scope: dict[str, Any], send: Any) -> None:
        """Server-sent events: one ``event: status`` per status change, until the task ends."""
        from beamray.tasks import client, records

        task_id = [part for part in scope["path"].split("/") if part][2]
        if not self._auth_ok(scope):
            response = _json(401, {"error": "Unauthorized"})
        elif await client.service().get.remote(task_id) is None:
            response = _json(404, {"error": "task not found"})
        else:
            response = None
        if response is not None:
            await send({"type": "http.response.start", "status": response["status"],
                        "headers": response["headers"]})
            await send({"type": "http.response.body", "body": response["body"]})
            return
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]})
        last = None
        while True:
            task = await client.service().get.remote(task_id)
            if task["status"] != last:
                last = task["status"]
                event = {"status": task["status"], "result": task["result"], "outputs": task["outputs"]}
                await send({"type": "http.response.body", "more_body": True,
                            "body": f"event: status\ndata: {json.dumps(event)}\n\n".encode()})
            if task["status"] in records.TERMINAL:
                await send({"type": "http.response.body", "body": b""})
                return
            await asyncio.sleep(0.1)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress()
class Gateway:
    def __serve_build_asgi_app__(self) -> GatewayApp:
        return GatewayApp()
