"""The Serve deployment behind every web deployment: Beam's container around the user's handler.

One replica = one Beam container: the environment (ids, env, secrets) is set for the process, ``on_start``
runs once, and ``http_app.build_app`` serves the handler. The gateway reaches it through ``forward``.
"""

from __future__ import annotations

import asyncio
import hmac
import inspect
import os
from typing import Any, Callable

from ray import serve

from beamray.context import FunctionContext
from beamray.runtime import mounts
from beamray.runtime.container import ContainerCode, function_context, load_user_code, run_hook
from beamray.serve_bridge import http_app
from beamray.serve_bridge.web_app import version_mount
from beamray.serve_bridge.options import concurrency
from beamray.specs import EndpointSpec


def bearer_check(token: str) -> Callable[[str | None], bool]:
    expected = f"Bearer {token}".encode()
    return lambda header: header is not None and hmac.compare_digest(header.encode(), expected)


def _replica_suffix() -> str:
    """Serve's own id of this replica (the end of its actor name), so ``beamray container list`` shows the
    ``CONTAINER_ID`` the handler sees."""
    try:
        return serve.get_replica_context().replica_id.unique_id
    except Exception:  # not in a replica
        return os.urandom(4).hex()


def container_environment(kind: str, record: dict[str, Any], spec: EndpointSpec) -> dict[str, str]:
    """Beam's container variables plus the spec's env and secrets (values read here, never shipped)."""
    from beamray import secrets
    from beamray.runtime.worker import _expand

    secret_values = secrets.load_many(spec.runtime.secrets) if spec.runtime.secrets else {}
    container_id = f"{kind}-{record['stub_id'][:8]}-{_replica_suffix()}"
    variables = {"CONTAINER_ID": container_id, "STUB_ID": record["stub_id"], "STUB_TYPE": f"{kind}/deployment",
                 "TIMEOUT": str(int(spec.timeout or 0)), "WORKERS": str(spec.serving.workers),
                 "KEEP_WARM_SECONDS": str(int(spec.serving.keep_warm_seconds))}
    variables.update(secret_values)
    variables.update({key: _expand(value, secret_values) for key, value in spec.runtime.env})
    return variables


@serve.deployment
@serve.ingress()
class BeamrayReplica:
    def __init__(self, spec_blob: bytes, record: dict[str, Any], container_code: ContainerCode | None) -> None:
        from beamray import config, secrets

        spec: EndpointSpec = load_user_code(spec_blob, record["handler"], container_code)
        os.environ.update(container_environment(spec.kind, record, spec))
        self._mounts = mounts.process_mounts(spec.runtime.volumes)
        on_start_value = run_hook(spec.serving.on_start)
        self._mounts.sync()

        bind_port = config.http_port()

        def make_context(task_id: str | None) -> FunctionContext:
            return function_context(
                container_id=os.environ["CONTAINER_ID"], stub_id=record["stub_id"],
                stub_type=f"{spec.kind}/deployment", callback_url=spec.callback_url or None, task_id=task_id,
                timeout=int(spec.timeout or 0), on_start_value=on_start_value, bind_port=bind_port,
            )

        handler: Any = spec.func
        if spec.kind == "asgi":
            accepts_context = bool(inspect.signature(spec.func).parameters)
            handler = spec.func(make_context(None)) if accepts_context else spec.func()
        authorize = bearer_check(secrets.gateway_token()) if spec.serving.authorized else None
        app = http_app.build_app(spec.kind, handler, make_context=make_context, authorize=authorize,
                                 concurrency=concurrency(spec.serving), timeout=spec.timeout,
                                 callback_url=spec.callback_url)
        self._app = version_mount(app, record["version"])

    def __serve_build_asgi_app__(self) -> Any:
        return self._app

    def __del__(self) -> None:
        mounts_ = getattr(self, "_mounts", None)
        if mounts_ is not None:
            mounts_.close()

    async def forward(self, request: dict[str, Any]) -> dict[str, Any]:
        """Serve one HTTP request handed over by the gateway (an alias URL), in-process, buffered."""
        scope = {
            "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "scheme": "http",
            "method": request["method"], "path": request["path"], "raw_path": request["path"].encode(),
            "root_path": "", "query_string": request["query_string"],
            "headers": [(key, value) for key, value in request["headers"]],
            "client": ("127.0.0.1", 0), "server": ("127.0.0.1", 0),
        }
        body_sent = False

        async def receive() -> dict[str, Any]:
            nonlocal body_sent
            if body_sent:
                await asyncio.Event().wait()  # nothing more will come; the app decides when it is done
            body_sent = True
            return {"type": "http.request", "body": request["body"], "more_body": False}

        response: dict[str, Any] = {"status": 500, "headers": [], "body": b""}
        chunks: list[bytes] = []

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                response["status"] = message["status"]
                response["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        await self._app(scope, receive, send)
        response["body"] = b"".join(chunks)
        return response
