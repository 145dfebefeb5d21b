"""The HTTP gateway at ``/``: Beam's alias URLs, and 404s for everything nobody serves.

Each deployed version is its own Serve application at ``/{kind}/{name}/v{N}``, reached by Serve's proxy
directly (no extra hop). The gateway catches what no version prefix matched: ``/{kind}/{name}``,
``…/latest``, ``/{kind}/id/{stub}``, ``/{kind}/public/{stub}``, and forwards them to the right
version's replica through a deployment handle (one extra hop, buffered responses).
"""

from __future__ import annotations

import json
import time
from typing import Any

from ray import serve

from beamray.registry import DeploymentRecord, Registry

KINDS = ("endpoint", "asgi", "realtime", "taskqueue", "function", "schedule")
_CACHE_S = 1.0


def _json(status: int, body: dict[str, Any]) -> dict[str, Any]:
    return {"status": status, "headers": [(b"content-type", b"application/json")],
            "body": json.dumps(body).encode()}


class Routes:
    """Alias path → (record, path inside the deployment), from the registry with a short cache."""

    def __init__(self) -> None:
        self._registry = Registry()
        self._records: list[DeploymentRecord] = []
        self._at = 0.0

    def running(self) -> list[DeploymentRecord]:
        if time.monotonic() - self._at > _CACHE_S:
            self._records = [r for r in self._registry.records() if r.status == "running"]
            self._at = time.monotonic()
        return self._records

    def resolve(self, path: str) -> tuple[DeploymentRecord | None, str, bool]:
        """The record a path names, the rest of the path, and whether the path is the public form."""
        parts = [part for part in path.split("/") if part]
        if len(parts) < 2 or parts[0] not in KINDS:
            return None, "", False
        kind, rest = parts[0], parts[1:]
        if rest[0] in ("id", "public") and len(rest) >= 2:
            matches = [r for r in self.running() if r.kind == kind and r.stub_id == rest[1]]
            record = matches[0] if matches else None
            if record is not None and rest[0] == "public" and record.authorized:
                record = None  # an authorized deployment has no public URL
            return record, "/" + "/".join(rest[2:]), rest[0] == "public"
        name, rest = rest[0], rest[1:]
        if rest and rest[0] == "latest":
            rest = rest[1:]
        elif rest and rest[0].startswith("v") and rest[0][1:].isdigit():
            return None, "", False  # a version whose own route did not match is not running
        versions = [r for r in self.running() if r.kind == kind and r.name == name]
        return (versions[-1] if versions else None), "/" + "/".join(rest), False


class GatewayApp:
    """Plain ASGI: bodies and headers pass to the deployment unchanged."""

    def __init__(self) -> None:
        self._routes = Routes()
        self._handles: dict[str, Any] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4404, "reason": "connect to /realtime/NAME/vN"})
            return
        if scope["type"] == "lifespan":
            while (message := await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        record, inner_path, _ = self._routes.resolve(scope["path"])
        if record is None:
            response = _json(404, {"error": "not found"})
        else:
            response = await self._forward(record, inner_path, scope, receive)
        await send({"type": "http.response.start", "status": response["status"], "headers": response["headers"]})
        await send({"type": "http.response.body", "body": response["body"]})

    async def _forward(self, record: DeploymentRecord, path: str, scope: dict[str, Any], receive: Any
                       ) -> dict[str, Any]:
        body = bytearray()
        while True:
            message = await receive()
            body.extend(message.get("body", b""))
            if len(body) > 16 * 2**20:
                return _json(413, {"error": "payload too large"})
            if not message.get("more_body"):
                break
        handle = self._handles.get(record.app_name)
        if handle is None:
            handle = serve.get_app_handle(record.app_name).options(method_name="forward")
            self._handles[record.app_name] = handle
        request = {"method": scope["method"], "path": path, "query_string": scope.get("query_string", b""),
                   "headers": list(scope.get("headers", [])), "body": bytes(body)}
        return await handle.remote(request)


@serve.deployment(ray_actor_options={"num_cpus": 0}, max_ongoing_requests=1000)
@serve.ingress()
class Gateway:
    def __serve_build_asgi_app__(self) -> GatewayApp:
        return GatewayApp()
