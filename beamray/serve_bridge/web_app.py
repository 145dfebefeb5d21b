"""What every web kind's replica app shares: the ASGI entry, Beam's auth, ``/health`` and ``/warmup``.

Pure ASGI (no Ray import), so it runs and is tested under any ASGI server. Paths are matched relative to
the mount point: Ray Serve keeps the full path and sets ``root_path`` to the route prefix; servers that
strip the prefix are handled too. Each kind (``endpoint_app``, ``realtime_app``, ``mounted_app``) fills in
``_route`` for HTTP and ``_socket`` for WebSockets; everything else is here, once.

WebSocket auth failure: when the server offers the ``websocket.http.response`` extension (uvicorn does,
and Serve passes uvicorn's scope through) the handshake is refused with a real HTTP 401 and a JSON body
(websockets clients raise ``InvalidStatus`` with status 401). Otherwise the socket is accepted and closed
at once with code 4401, reason "Unauthorized" (4404 for an unknown path), which clients can read.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from beamray.context import FunctionContext, wants_context
from beamray.serve_bridge.asgi import (HEALTH, METHOD_NOT_ALLOWED, NOT_FOUND, UNAUTHORIZED, Receive, Scope, Send,
                                       header_map, is_async_callable, relative_path, send_empty, send_json,
                                       ws_reject)
from beamray.serve_bridge.runner import HandlerRunner


class WebApp:
    """One replica's ASGI app (one instance per replica, or per uvicorn worker)."""

    calls_handler = True  # False where the handler is an ASGI app that runs by itself

    def __init__(
        self,
        handler: Any,
        make_context: Callable[[str], FunctionContext],
        authorize: Callable[[str | None], bool] | None,
        concurrency: int,
        timeout: float | None,
        max_body_bytes: int,
        callback_url: str = "",
    ) -> None:
        self._handler = handler
        self._make_context = make_context
        self._authorize = authorize
        self._max_body = max_body_bytes
        self._callback_url = callback_url
        calls = self.calls_handler
        self._runner = HandlerRunner(
            handler, concurrency, timeout, is_async=calls and is_async_callable(handler),
            call_inline=calls and (inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler)))
        self._wants_context = calls and wants_context(handler)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self._authorize is None:
            return True
        value = headers.get(b"authorization")
        return bool(self._authorize(None if value is None else value.decode("latin-1")))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self._runner.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = relative_path(scope)
        method = scope["method"]
        if rel == "/health" and method in ("GET", "HEAD"):
            await self._health(scope, receive, send, rel)
            return
        headers = header_map(scope)
        if not self._authorized(headers):
            await send_json(send, 401, UNAUTHORIZED)
            return
        if rel == "/warmup" and method == "POST":
            await send_empty(send)
            return
        await self._route(scope, receive, send, headers, rel)

    async def _health(self, scope: Scope, receive: Receive, send: Send, rel: str) -> None:
        await send_json(send, 200, HEALTH)

    async def _route(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                     rel: str) -> None:
        """An authorized HTTP request other than the health check and warmup; kinds serve their own paths."""
        if rel in ("/health", "/warmup"):
            allow = b"GET, HEAD" if rel == "/health" else b"POST"
            await send_json(send, 405, METHOD_NOT_ALLOWED, ((b"allow", allow),))
        else:
            await send_json(send, 404, NOT_FOUND)

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = header_map(scope)
        if not self._authorized(headers):
            await ws_reject(scope, receive, send, 401, UNAUTHORIZED)
            return
        await self._socket(scope, receive, send, headers, relative_path(scope))

    async def _socket(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                      rel: str) -> None:
        await ws_reject(scope, receive, send, 404, NOT_FOUND)


def version_mount(app: Any, version: int) -> Any:
    """``app`` (version ``version``) mountable at Beam's alias prefix ``/{kind}/{name}`` as well as its own.

    The latest version of a name is routed at the alias prefix (``apps.promote``), so the ingress also
    hands it ``…/v{version}/…`` and ``…/latest/…``: that segment becomes part of ``root_path`` and the app
    sees the paths it sees at its own prefix. ``…/v{other}/…`` names a version that does not run (a running
    one has its own, longer prefix): 404, as the gateway answers for it.
    """
    own = (f"/v{version}", "/latest")

    async def mounted(scope: Scope, receive: Receive, send: Send) -> None:
        root = scope.get("root_path", "")
        if scope["type"] in ("http", "websocket") and not root.endswith(own[0]):
            segment = "/" + relative_path(scope).split("/", 2)[1]
            if segment in own:
                scope = {**scope, "root_path": root + segment}
            elif segment[1:2] == "v" and segment[2:].isdigit():
                if scope["type"] == "http":
                    await send_json(send, 404, NOT_FOUND)
                else:
                    await ws_reject(scope, receive, send, 404, NOT_FOUND)
                return
        await app(scope, receive, send)

    return mounted
