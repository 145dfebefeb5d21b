"""The replica app of ``@asgi``: the ASGI app the user's handler returned, mounted under Beam's rules.

Beam adds ``/health`` (an app's own wins, for callers that pass auth) and ``/warmup``, checks auth, gives
each request its own ``X-Task-Id`` (never the client's), and bounds every request by the body limit, the
concurrency limit and the timeout before the user's app sees it.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any
from urllib.parse import quote

from beamray.serve_bridge.asgi import (HEALTH, TOO_LARGE, ASGIApp, Message, Receive, Scope, Send,
                                       declared_too_large, header_map, send_error, send_json)
from beamray.serve_bridge.runner import TimedOut, consume
from beamray.serve_bridge.web_app import WebApp

logger = logging.getLogger(__name__)


class MountedApp(WebApp):
    """Forwards every path, HTTP and WebSocket, to the user's ASGI app."""

    calls_handler = False

    def __init__(self, handler: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(handler, *args, **kwargs)
        self._app: ASGIApp = handler

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)

    async def _health(self, scope: Scope, receive: Receive, send: Send, rel: str) -> None:
        """Beam's plain 200 for anyone; the app's own ``/health`` only for callers that pass auth."""
        if self._authorized(header_map(scope)):
            await self._asgi_health(scope, receive, send, rel)
        else:
            await send_json(send, 200, HEALTH)

    async def _route(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                     rel: str) -> None:
        await self._asgi_http(scope, receive, send, headers, rel)

    async def _socket(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                      rel: str) -> None:
        await self._app(self._mounted(scope, rel, str(uuid.uuid4()).encode()), receive, send)

    def _mounted(self, scope: Scope, rel: str, task_id: bytes = b"") -> Scope:
        """The scope the user's app sees: the full path under ``root_path``, as Starlette/FastAPI expect,
        and ``task_id`` as its ``X-Task-Id`` in place of any the client sent (a caller must not pick it)."""
        root = scope.get("root_path", "")
        path = root + rel
        scope = dict(scope)
        headers = [(key, value) for key, value in scope.get("headers", ()) if key.lower() != b"x-task-id"]
        scope["headers"] = headers + [(b"x-task-id", task_id)] if task_id else headers
        if scope["path"] != path:
            scope["path"] = path
            scope["raw_path"] = quote(path).encode("ascii")
        return scope

    async def _asgi_health(self, scope: Scope, receive: Receive, send: Send, rel: str) -> None:
        """Beam adds ``/health`` to the app; a ``/health`` the app defines itself wins."""
        state = {"fallback": False, "sent": False}

        async def health_send(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 404:
                state["fallback"] = True
            if state["fallback"]:
                return
            state["sent"] = True
            await send(message)

        try:
            await self._app(self._mounted(scope, rel), receive, health_send)
        except Exception:
            if state["sent"]:
                raise
            logger.exception("asgi app failed its /health; answering 200 for the replica")
            state["fallback"] = True
        if state["fallback"] or not state["sent"]:
            await send_json(send, 200, HEALTH)

    async def _asgi_http(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[bytes, bytes],
        rel: str,
    ) -> None:
        """Forward to the user's app under the body limit, the concurrency limit and the timeout.

        The timeout bounds the time until the app starts its response, so long streams (SSE) live on.
        """
        if declared_too_large(headers, self._max_body):
            await send_json(send, 413, TOO_LARGE)
            return
        task_id = str(uuid.uuid4()).encode()
        echo = ((b"x-task-id", task_id),)
        limit = self._max_body
        deadline = self._runner.deadline()
        started: asyncio.Future | None = None if deadline is None else asyncio.get_running_loop().create_future()
        state = {"size": 0, "too_large": False, "started": False}

        async def limited_receive() -> Message:
            if state["too_large"]:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                state["size"] += len(message.get("body", b""))
                if state["size"] > limit:
                    state["too_large"] = True  # the app sees a disconnect; we answer 413
                    return {"type": "http.disconnect"}
            return message

        async def tracking_send(message: Message) -> None:
            if state["too_large"] and not state["started"]:
                return
            if message["type"] == "http.response.start":
                state["started"] = True
                if started is not None and not started.done():
                    started.set_result(None)
                response_headers = list(message.get("headers", ()))
                if not any(key.lower() == b"x-task-id" for key, _ in response_headers):
                    response_headers.append(echo[0])
                message = {**message, "headers": response_headers}
            await send(message)

        try:
            slot = await self._runner.acquire(deadline)
        except TimedOut:
            await send_error(send, 504, self._runner.timeout_message(), echo)
            return
        try:
            call = self._app(self._mounted(scope, rel, task_id), limited_receive, tracking_send)
            try:
                if started is None:
                    await call
                else:
                    task = asyncio.ensure_future(call)
                    try:
                        await asyncio.wait(
                            (task, started), timeout=self._runner.remaining(deadline),
                            return_when=asyncio.FIRST_COMPLETED,
                        )
                    except BaseException:
                        task.cancel()
                        task.add_done_callback(consume)
                        raise
                    if not task.done() and not state["started"]:
                        task.cancel()
                        task.add_done_callback(consume)
                        if not state["too_large"]:
                            await send_error(send, 504, self._runner.timeout_message(), echo)
                            return
                    else:
                        await task
            except Exception:
                if state["started"] or not state["too_large"]:
                    raise
            if state["too_large"] and not state["started"]:
                await send_json(send, 413, TOO_LARGE)
        finally:
            slot.release()
