"""The ASGI app that sits in one Serve replica in front of a user's endpoint, asgi or realtime handler.

Pure ASGI (no Ray import), so it runs and is tested under any ASGI server. It does what Beam's container
runner does for one request, per kind: auth, ``/warmup`` and ``/health``, ``context`` injection, Beam's
response shapes (JSON, passthrough, ``data:`` streams), realtime WebSocket messages, a mounted ASGI app.
Payloads, framing and limits are ``asgi.py``'s; concurrency and deadlines are ``runner.py``'s (the
timeout also covers a streamed generator response).

Paths are matched relative to the mount point: Ray Serve keeps the full path and sets ``root_path`` to
the route prefix; servers that strip the prefix are handled too.

- WebSocket auth failure: when the server offers the ``websocket.http.response`` extension (uvicorn does,
  and Serve passes uvicorn's scope through) the handshake is refused with a real HTTP 401 and a JSON body
  (websockets clients raise ``InvalidStatus`` with status 401). Otherwise the socket is accepted and closed
  at once with code 4401, reason "Unauthorized" (4404 for an unknown path), which clients can read.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import logging
import traceback
import uuid
from typing import Any, Callable
from urllib.parse import parse_qsl, quote

from starlette.responses import Response

from beamray.context import FunctionContext, wants_context
from beamray.serve_bridge.asgi import (BAD_PAYLOAD, HEALTH, MAX_BODY_BYTES, METHOD_NOT_ALLOWED,
                                       NOT_FOUND, TOO_LARGE, UNAUTHORIZED, ASGIApp, Disconnected, Message,
                                       PayloadError, Receive, Scope, Send, TooLarge, declared_too_large, dumps,
                                       event_frame, header_map, is_asgi3, is_async_callable, parse_payload,
                                       read_body, relative_path, send_empty, send_error, send_json, ws_reject)
from beamray.serve_bridge.runner import HandlerRunner, Slot, TimedOut, consume
from beamray.specs import WEB_KINDS

__all__ = ["ASGIApp", "MAX_BODY_BYTES", "PayloadError", "build_app", "parse_payload"]

logger = logging.getLogger(__name__)


class _Bridge:
    """The replica's ASGI app; one instance per replica (or per uvicorn worker)."""

    def __init__(
        self,
        kind: str,
        handler: Any,
        make_context: Callable[[str], FunctionContext],
        authorize: Callable[[str | None], bool] | None,
        concurrency: int,
        timeout: float | None,
        max_body_bytes: int,
        callback_url: str = "",
    ) -> None:
        self._kind = kind
        self._callback_url = callback_url
        self._handler = handler
        self._make_context = make_context
        self._authorize = authorize
        self._max_body = max_body_bytes
        self._app: ASGIApp | None = handler if kind == "asgi" else None
        web_handler = kind != "asgi"
        self._runner = HandlerRunner(
            handler, concurrency, timeout, is_async=web_handler and is_async_callable(handler),
            call_inline=web_handler and (inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler)))
        if kind == "asgi":
            return
        self._wants_context = wants_context(handler)
        if kind == "realtime":
            self._event_arg = _event_argument(handler)

    @staticmethod
    def _callback(url: str | None, task_id: str, status: str, data: Any) -> None:
        """Send Beam's signed task callback in the background: it must never delay or fail the response."""
        if url:
            from beamray import callbacks

            asyncio.get_running_loop().run_in_executor(None, callbacks.send, url, task_id, status, data)

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self._authorize is None:
            return True
        value = headers.get(b"authorization")
        return bool(self._authorize(None if value is None else value.decode("latin-1")))

    # ---- ASGI entry ---------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self._http(scope, receive, send)
        elif kind == "websocket":
            await self._websocket(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is not None:
            await self._app(scope, receive, send)
            return
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
            if self._app is not None:
                await self._asgi_health(scope, receive, send, rel)
            else:
                await send_json(send, 200, HEALTH)
            return
        headers = header_map(scope)
        if not self._authorized(headers):
            await send_json(send, 401, UNAUTHORIZED)
            return
        if rel == "/warmup" and method == "POST":
            await send_empty(send)
            return
        if self._app is not None:
            await self._asgi_http(scope, receive, send, headers, rel)
            return
        if rel == "/" and self._kind == "endpoint":
            if method not in ("GET", "POST"):
                await send_json(send, 405, METHOD_NOT_ALLOWED, ((b"allow", b"GET, POST"),))
                return
            await self._endpoint(scope, receive, send, headers)
        elif rel == "/" and self._kind == "realtime":
            await send_error(send, 426, "websocket required", ((b"upgrade", b"websocket"),))
        elif rel in ("/health", "/warmup"):
            allow = b"GET, HEAD" if rel == "/health" else b"POST"
            await send_json(send, 405, METHOD_NOT_ALLOWED, ((b"allow", allow),))
        else:
            await send_json(send, 404, NOT_FOUND)

    # ---- endpoint -----------------------------------------------------------------------------

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        if declared_too_large(headers, self._max_body):
            await send_json(send, 413, TOO_LARGE)
            return
        try:
            body = await read_body(receive, self._max_body)
        except TooLarge:
            await send_json(send, 413, TOO_LARGE)
            return
        except Disconnected:
            return
        query_string: bytes = scope.get("query_string", b"")
        query = parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True) if query_string else []
        try:
            args, kwargs = parse_payload(body, query)
        except PayloadError:
            await send_json(send, 400, BAD_PAYLOAD)
            return

        raw_id = headers.get(b"x-task-id")
        if raw_id:
            task_id = raw_id.decode("latin-1")
        else:
            task_id = str(uuid.uuid4())
            raw_id = task_id.encode()
        echo = ((b"x-task-id", raw_id),)

        deadline = self._runner.deadline()
        try:
            slot = await self._runner.acquire(deadline)
        except TimedOut:
            await send_error(send, 504, self._runner.timeout_message(), echo)
            return
        # Beam's endpoint runner leaves a request-level callback_url in the handler's kwargs.
        callback_url = kwargs.get("callback_url") if isinstance(kwargs.get("callback_url"), str) else None
        callback_url = callback_url or self._callback_url
        try:
            try:
                if self._wants_context:
                    kwargs["context"] = self._make_context(task_id)
                result = await self._runner.call(functools.partial(self._handler, *args, **kwargs), slot, deadline)
            except TimedOut:
                self._callback(callback_url, task_id, "TIMEOUT", {})
                await send_error(send, 504, self._runner.timeout_message(), echo)
                return
            except Exception:
                error = traceback.format_exc()
                logger.error("handler failed (task %s)\n%s", task_id, error)
                self._callback(callback_url, task_id, "ERROR", {})
                await send_error(send, 500, error, echo)
                return
            if not isinstance(result, Response) and not inspect.isgenerator(result) and not inspect.isasyncgen(result):
                self._callback(callback_url, task_id, "COMPLETE", result)

            if isinstance(result, Response):
                await result(scope, receive, send)
            elif inspect.isgenerator(result) or inspect.isasyncgen(result):
                await self._stream(result, receive, send, echo, slot, deadline, task_id)
            else:
                try:
                    body = dumps(result)
                except Exception:
                    error = traceback.format_exc()
                    logger.error("response serialization failed (task %s)\n%s", task_id, error)
                    await send_error(send, 500, error, echo)
                    return
                await send_json(send, 200, body, echo)
        finally:
            slot.release()

    async def _stream(
        self,
        result: Any,
        receive: Receive,
        send: Send,
        echo: tuple,
        slot: Slot,
        deadline: float | None,
        task_id: str,
    ) -> None:
        """Send a generator as ``text/plain`` ``data:`` events; a failure mid-stream aborts the response."""
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8"), *echo],
            }
        )
        # The server keeps answering sends after the client left; watch receive() to stop early.
        gone = asyncio.ensure_future(receive())
        items = self._runner.items(result, slot, deadline)
        finished = False
        try:
            async for item in items:
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": event_frame(item), "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except TimedOut:
            logger.error("streamed response timed out (task %s)", task_id)
            raise TimeoutError(self._runner.timeout_message()) from None
        finally:
            gone.cancel()
            gone.add_done_callback(consume)
            await items.aclose()
            if not finished:
                self._runner.close_generator(result, slot)

    # ---- realtime -----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = relative_path(scope)
        headers = header_map(scope)
        if not self._authorized(headers):
            await ws_reject(scope, receive, send, 401, UNAUTHORIZED)
            return
        if self._app is not None:
            await self._app(self._mounted(scope, rel), receive, send)
            return
        if self._kind != "realtime" or rel != "/":
            await ws_reject(scope, receive, send, 404, NOT_FOUND)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        raw_id = headers.get(b"x-task-id")
        task_id = raw_id.decode("latin-1") if raw_id else str(uuid.uuid4())
        context = self._make_context(task_id) if self._wants_context else None
        try:
            while True:
                message = await receive()
                if message["type"] == "websocket.disconnect":
                    return
                if message["type"] != "websocket.receive":
                    continue
                text = message.get("text")
                event = text if text is not None else message.get("bytes") or b""
                await self._realtime_message(event, context, send)
        except Disconnected:
            return

    async def _realtime_message(self, event: Any, context: FunctionContext | None, send: Send) -> None:
        """Run the handler for one message and send what it returns; errors become an error frame."""
        kwargs = {"context": context} if self._wants_context else {}
        name = self._event_arg
        if name is None:
            func = functools.partial(self._handler, **kwargs)
        elif name == "":
            func = functools.partial(self._handler, event, **kwargs)
        else:
            kwargs[name] = event
            func = functools.partial(self._handler, **kwargs)
        deadline = self._runner.deadline()
        try:
            slot = await self._runner.acquire(deadline)
        except TimedOut:
            await _ws_send(send, _error_frame(self._runner.timeout_message()))
            return
        result = None
        try:
            result = await self._runner.call(func, slot, deadline)
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                items = self._runner.items(result, slot, deadline)
                try:
                    async for item in items:
                        await _ws_send(send, _ws_message(item))
                finally:
                    await items.aclose()
                result = None
            else:
                await _ws_send(send, _ws_message(result))
        except Disconnected:
            raise
        except TimedOut:
            await _ws_send(send, _error_frame(self._runner.timeout_message()))
        except Exception:
            error = traceback.format_exc()
            logger.error("realtime handler failed\n%s", error)
            await _ws_send(send, _error_frame(error))
        finally:
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                self._runner.close_generator(result, slot)
            slot.release()

    # ---- asgi ---------------------------------------------------------------------------------

    def _mounted(self, scope: Scope, rel: str) -> Scope:
        """The scope the user's app sees: the full path under ``root_path``, as Starlette/FastAPI expect."""
        root = scope.get("root_path", "")
        path = root + rel
        if scope["path"] == path:
            return scope
        scope = dict(scope)
        scope["path"] = path
        scope["raw_path"] = quote(path).encode("ascii")
        return scope

    async def _asgi_health(self, scope: Scope, receive: Receive, send: Send, rel: str) -> None:
        """Beam adds ``/health`` to the app; a ``/health`` the app defines itself wins."""
        assert self._app is not None
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
        assert self._app is not None
        if declared_too_large(headers, self._max_body):
            await send_json(send, 413, TOO_LARGE)
            return
        raw_id = headers.get(b"x-task-id") or str(uuid.uuid4()).encode()
        echo = ((b"x-task-id", raw_id),)
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
            call = self._app(self._mounted(scope, rel), limited_receive, tracking_send)
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


def _event_argument(handler: Callable[..., Any]) -> str | None:
    """How a realtime handler receives the message: by keyword (its name), positionally (""), or not.

    Beam calls ``handler(context=…, event=…)``; handlers naming the parameter differently or taking
    only ``context`` still work here.
    """
    try:
        params = inspect.signature(handler).parameters
    except (TypeError, ValueError):
        return ""
    if "event" in params:
        return "event"
    for param in params.values():
        if param.kind is inspect.Parameter.VAR_KEYWORD:
            return "event"
    for name, param in params.items():
        if name == "context":
            continue
        if param.kind in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.VAR_POSITIONAL):
            return ""
        return name
    return None


def _error_frame(message: str) -> Message:
    return {"type": "websocket.send", "text": json.dumps({"error": message})}


def _ws_message(value: Any) -> Message | None:
    """str → text frame, bytes → binary frame, None → nothing, anything else → JSON text frame."""
    if value is None:
        return None
    if isinstance(value, str):
        return {"type": "websocket.send", "text": value}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return {"type": "websocket.send", "bytes": bytes(value)}
    return {"type": "websocket.send", "text": dumps(value).decode("utf-8")}


async def _ws_send(send: Send, message: Message | None) -> None:
    if message is None:
        return
    try:
        await send(message)
    except Exception:  # the client went away (servers raise OSError/RuntimeError subclasses)
        raise Disconnected from None


def build_app(
    kind: str,
    handler: Callable[..., Any],
    *,
    make_context: Callable[[str], FunctionContext],
    authorize: Callable[[str | None], bool] | None,
    concurrency: int = 1,
    timeout: float | None = 180.0,
    max_body_bytes: int = MAX_BODY_BYTES,
    callback_url: str = "",
) -> ASGIApp:
    """Build the ASGI app one replica serves for an endpoint, asgi or realtime deployment.

    ``handler`` is the user's function, or for ``kind="asgi"`` the ASGI3 app the user's handler returned.
    ``make_context(task_id)`` builds the ``context`` passed to handlers that name it. ``authorize`` gets the
    raw ``Authorization`` header (``None`` when absent) and says whether to serve; ``None`` means public.
    ``concurrency`` caps handler calls at once (workers × concurrent_requests); ``timeout`` (seconds,
    ``None`` for none) bounds each request; bodies over ``max_body_bytes`` get 413. An endpoint call ends
    with Beam's signed callback to ``callback_url`` (or the request's own ``callback_url`` kwarg).
    """
    if kind not in WEB_KINDS:
        raise ValueError(f"build_app serves endpoint, asgi and realtime, not {kind!r}")
    if concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if kind == "asgi" and not is_asgi3(handler):
        raise TypeError("Invalid ASGI app returned from handler")
    if kind != "asgi" and not callable(handler):
        raise TypeError(f"{kind} handler must be callable, got {type(handler).__name__}")
    return _Bridge(kind, handler, make_context, authorize, concurrency, timeout, max_body_bytes, callback_url)
