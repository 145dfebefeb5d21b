"""Pods behind the gateway: the Serve app ``beamray-pods`` at ``/pod``, which starts pods on demand.

URLs (``{gw}`` the gateway; ``PORT`` may be left out for the pod's first port):

- a deployed pod, as every kind: ``{gw}/pod/{name}[/latest|/v{N}][/{PORT}]/…``, ``{gw}/pod/id/{stub_id}[/{PORT}]/…``
  and, with ``authorized=False`` (the default for pods), ``{gw}/pod/public/{stub_id}[/{PORT}]/…``;
- one container (``Pod.create()``, ``beamray run``): ``{gw}/pod/container/{container_id}[/{PORT}]/…``.

A deployed pod's version has at most one container at a time: a request finding none (idle-stopped,
exited, never started since a restart) starts one and waits until its ports listen. Connections are
relayed by ``port_proxy``; every container with open connections gets a heartbeat each
``HEARTBEAT_S`` (and at once when it goes from idle to busy), which is what its ``keep_warm_seconds``
counts from.
"""

from __future__ import annotations

import asyncio
import collections
import json
import time
from typing import Any

import cloudpickle
from ray import serve

from beamray import cluster, ray_private
from beamray.exceptions import BeamrayError, StoreUnavailableError
from beamray.runtime import pod as pods
from beamray.serve_bridge import port_proxy
from beamray.serve_bridge.asgi import NOT_FOUND, UNAUTHORIZED, header_map, relative_path, send_json, ws_reject
from beamray.serve_bridge.gateway_routes import Routes

APP_NAME = "beamray-pods"
ROUTE_PREFIX = "/pod"
HEARTBEAT_S = 1.0
LOOKUP_CACHE_S = 1.0
START_TIMEOUT_S = 300.0
_LAUNCHES = ray_private.InternalKV("beamray_pods")  # stub id → pickled PodLaunch of a deployed version


def register_launch(launch: pods.PodLaunch) -> None:
    """Let requests start containers of a deployed version (``deploy`` and ``restore`` call this)."""
    _LAUNCHES.put(launch.stub_id, cloudpickle.dumps(launch))


def launch_of(stub_id: str) -> pods.PodLaunch:
    blob = _LAUNCHES.get(stub_id)
    if blob is None:
        raise BeamrayError(f"no deployed pod version has stub id {stub_id}")
    return cloudpickle.loads(blob)


def unregister_launch(stub_id: str) -> None:
    """No more containers for this version; the running one (if any) is stopped."""
    _LAUNCHES.delete(stub_id)
    container_id = port_proxy.resolve_alias(stub_id)
    if container_id:
        pods.stop(container_id)


def ensure_running() -> None:
    """Run the pods app at ``/pod`` unless it runs already (Serve must be started: ``deploy.ensure_serve``)."""
    status = serve.status().applications.get(APP_NAME)
    if status is not None and status.status == "RUNNING":
        return
    app = PodIngress.options(ray_actor_options={"num_cpus": 0, "runtime_env": cluster.actor_runtime_env()})
    serve.run(app.bind(), name=APP_NAME, route_prefix=ROUTE_PREFIX)


def url_of(gateway_url: str, container_id: str, ports: tuple[int, ...]) -> str:
    """A container's URL; with several ports, Beam's ``<PORT>`` template."""
    base = f"{gateway_url}{ROUTE_PREFIX}/container/{container_id}"
    return f"{base}/<PORT>" if len(ports) > 1 else base


def _split_port(path: str, ports: tuple[int, ...]) -> tuple[int | None, str]:
    """``/{PORT}/rest`` → (PORT, "/rest") when PORT is one of ``ports``; else the first port and ``path``."""
    head, _, rest = path.lstrip("/").partition("/")
    if head.isdigit() and int(head) in ports:
        return int(head), "/" + rest
    return (ports[0] if ports else None), path


class PodProxy:
    """Plain ASGI: resolve the URL to a container, check the token, relay the connection."""

    def __init__(self) -> None:
        from beamray import secrets
        from beamray.serve_bridge.replica import bearer_check

        self._routes = Routes()
        self._authorize = bearer_check(secrets.gateway_token())
        self._sessions: port_proxy.Sessions | None = None
        self._cache: dict[str, tuple[float, port_proxy.Upstream | None]] = {}
        self._starting: dict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._open: collections.Counter[str] = collections.Counter()
        self._beat_at: dict[str, float] = {}
        self._actors: dict[str, Any] = {}
        self._heartbeats: asyncio.Task[None] | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if self._sessions is None:
            import ray

            context = ray.get_runtime_context()
            self._sessions = port_proxy.Sessions(context.get_node_id(), ray.util.get_node_ip_address())
            self._heartbeats = asyncio.create_task(self._beat())
        try:
            await self._serve(scope, receive, send)
        except StoreUnavailableError as exc:
            await self._refuse(scope, receive, send, 503, str(exc))
        except BeamrayError as exc:
            await self._refuse(scope, receive, send, 502, str(exc))

    async def _refuse(self, scope: dict[str, Any], receive: Any, send: Any, status: int, error: str | bytes) -> None:
        body = error if isinstance(error, bytes) else json.dumps({"error": error}).encode()
        if scope["type"] == "websocket":
            await ws_reject(scope, receive, send, status, body)
        else:
            await send_json(send, status, body)

    async def _serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        path = relative_path(scope)
        parts = path.lstrip("/").split("/", 2)
        stub_id = ""
        if parts[0] == "container" and len(parts) >= 2:
            container_id, inner = parts[1], "/" + (parts[2] if len(parts) > 2 else "")
            upstream = await self._lookup(container_id)
            authorized = upstream is None or upstream.authorized
        else:
            record, inner, _ = await self._routes.resolve(ROUTE_PREFIX + path)
            if record is None or record.kind != "pod":
                await self._refuse(scope, receive, send, 404, NOT_FOUND)
                return
            stub_id, authorized = record.stub_id, record.authorized
            container_id = await asyncio.to_thread(port_proxy.resolve_alias, stub_id) or ""
            upstream = await self._lookup(container_id) if container_id else None
        if authorized and not self._authorize((header_map(scope).get(b"authorization") or b"").decode("latin-1")
                                              or None):
            await self._refuse(scope, receive, send, 401, UNAUTHORIZED)
            return
        if not inner.strip("/") and not path.endswith("/") and scope["type"] == "http":
            await self._redirect(scope, send)  # relative links of a directory page need the slash
            return
        for attempt in range(2):
            if upstream is None and stub_id:
                upstream = await self._start(stub_id)
            if upstream is None:
                await self._refuse(scope, receive, send, 404, NOT_FOUND)
                return
            port, rest = _split_port(inner, upstream.ports)
            if port is None:
                await self._refuse(scope, receive, send, 404, "this pod exposes no ports")
                return
            try:
                session, url = self._sessions.route(upstream, port, rest, scope.get("query_string", b""))
                await self._relay(upstream.container_id, scope, receive, send, url, session)
                return
            except port_proxy.UpstreamUnavailable:
                self._cache.pop(upstream.container_id, None)  # it stopped meanwhile: look again, start again
                await self._sessions.forget(upstream)
                upstream = None
                if attempt or not stub_id:
                    await self._refuse(scope, receive, send, 502, f"pod port {port} is not reachable")
                    return

    async def _redirect(self, scope: dict[str, Any], send: Any) -> None:
        location = scope.get("root_path", "") + relative_path(scope) + "/"
        if scope.get("query_string"):
            location += "?" + scope["query_string"].decode("latin-1")
        await send({"type": "http.response.start", "status": 307, "headers": [(b"location", location.encode())]})
        await send({"type": "http.response.body", "body": b""})

    async def _lookup(self, container_id: str) -> port_proxy.Upstream | None:
        cached = self._cache.get(container_id)
        if cached is not None and time.monotonic() - cached[0] < LOOKUP_CACHE_S:
            return cached[1]
        found = await asyncio.to_thread(port_proxy.lookup, container_id)
        self._cache[container_id] = (time.monotonic(), found)
        return found

    async def _start(self, stub_id: str) -> port_proxy.Upstream | None:
        """Start the version's container unless another request just did; None when it is not deployed."""
        async with self._starting[stub_id]:
            running = await asyncio.to_thread(port_proxy.resolve_alias, stub_id)
            if running and (found := await asyncio.to_thread(port_proxy.lookup, running)) is not None:
                return found
            blob = await asyncio.to_thread(_LAUNCHES.get, stub_id)
            if blob is None:
                return None
            launch: pods.PodLaunch = cloudpickle.loads(blob)
            if running:
                await asyncio.to_thread(pods.stop, running)  # an exited one lingering: free its resources
            container_id = await asyncio.to_thread(pods.start, launch)
            state = await asyncio.to_thread(pods.wait_ready, container_id, START_TIMEOUT_S)
            if state["status"] != "RUNNING":
                raise BeamrayError(f"pod {launch.spec.name} did not start: {state['status']} "
                                   f"(exit code {state['exit_code']}); output:\n{state['output_tail']}")
            self._cache.pop(container_id, None)
            return await self._lookup(container_id)

    async def _relay(self, container_id: str, scope: dict[str, Any], receive: Any, send: Any, url: str,
                     session: Any) -> None:
        self._open[container_id] += 1
        if self._open[container_id] == 1 and time.monotonic() - self._beat_at.get(container_id, 0) > HEARTBEAT_S / 2:
            self._send_beat(container_id, True)
        try:
            await port_proxy.forward(scope, receive, send, url, session)
        finally:
            self._open[container_id] -= 1
            self._beat_at.setdefault(container_id, 0.0)

    def _send_beat(self, container_id: str, busy: bool) -> None:
        self._beat_at[container_id] = time.monotonic()
        actor = self._actors.get(container_id) or pods.handle(container_id)
        if actor is not None:
            self._actors[container_id] = actor
            actor.heartbeat.remote(busy)  # fire and forget

    async def _beat(self) -> None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            for container_id in list(self._beat_at):
                busy = self._open[container_id] > 0
                try:
                    await asyncio.to_thread(self._send_beat, container_id, busy)
                except Exception:  # a container that ended: forget it
                    pass
                if not busy:
                    self._beat_at.pop(container_id, None)
                    self._open.pop(container_id, None)


@serve.deployment(max_ongoing_requests=1000, logging_config={"enable_access_log": False, "log_level": "WARNING"})
@serve.ingress()
class PodIngress:
    def __init__(self) -> None:
        self._app = PodProxy()

    def __serve_build_asgi_app__(self) -> PodProxy:
        return self._app


