"""The ASGI app that sits in one Serve replica in front of a user's endpoint, asgi or realtime handler.

Pure ASGI (no Ray import), so it runs and is tested under any ASGI server. It does what Beam's container
runner and gateway do for one request: auth, ``/warmup`` and ``/health``, the 16 MiB body limit, Beam's
payload convention (``parse_payload``), ``context`` injection, a per-replica concurrency limit with an
in-process queue, a per-request timeout and Beam's response shapes (JSON, passthrough, ``data:`` streams).

Paths are matched relative to the mount point: Ray Serve keeps the full path and sets ``root_path`` to
the route prefix; servers that strip the prefix are handled too.

Design notes:
- Concurrency: at most ``concurrency`` handler calls at once (``asyncio.Semaphore``). Excess requests
  wait here instead of being refused, because Serve's router degrades when requests exceed
  ``max_ongoing_requests``; the caller sets that high and lets this queue absorb bursts.
- Timeout: the clock starts once the body is read and covers queueing plus the call; for endpoints it
  also covers a streamed (generator) response. An async handler is cancelled. A sync handler's thread
  cannot be stopped: the client gets its 504 at once, the thread finishes in the background and keeps its
  concurrency slot until then, so ``concurrency`` stays a true bound on running handler code.
- WebSocket auth failure: when the server offers the ``websocket.http.response`` extension (uvicorn does,
  and Serve passes uvicorn's scope through) the handshake is refused with a real HTTP 401 and a JSON body
  (websockets clients raise ``InvalidStatus`` with status 401). Otherwise the socket is accepted and closed
  at once with code 4401, reason "Unauthorized" (4404 for an unknown path), which clients can read.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import json
import logging
import math
import traceback
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Awaitable, Callable, MutableMapping
from urllib.parse import parse_qsl, quote

from starlette.responses import Response

from beamray.context import FunctionContext, wants_context
from beamray.specs import WEB_KINDS

MAX_BODY_BYTES = 16 * 2**20  # Beam's request limit: larger bodies get 413

__all__ = ["ASGIApp", "PayloadError", "build_app", "parse_payload"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

logger = logging.getLogger(__name__)



class PayloadError(ValueError):
    """The request body is not what Beam's gateway accepts (answered with 400)."""


# --------------------------------------------------------------------------------------------------
# Payload: Beam's gateway convention (beta9 task.SerializeHttpPayload)
# --------------------------------------------------------------------------------------------------


def parse_payload(body: bytes, query: list[tuple[str, str]]) -> tuple[list, dict]:
    """Turn a request body and query into ``(args, kwargs)`` exactly as Beam's gateway does.

    An empty body (or JSON ``null``) gives no arguments. A JSON object uses its ``"args"`` list and
    ``"kwargs"`` object when present; otherwise the remaining object becomes kwargs. Query parameters are
    merged into kwargs last: numeric strings become floats, a repeated parameter becomes a list (of
    floats when all are numeric, else of the raw strings). Anything else raises ``PayloadError``.
    """
    args: list = []
    kwargs: dict = {}
    if body.strip():
        try:
            payload = json.loads(body)
        except ValueError:  # includes JSONDecodeError and UnicodeDecodeError
            raise PayloadError("invalid request payload") from None
        if payload is not None and not isinstance(payload, dict):
            raise PayloadError("invalid request payload")
        if payload:
            if isinstance(payload.get("args"), list):
                args = payload.pop("args")
            if isinstance(payload.get("kwargs"), dict):
                kwargs = payload.pop("kwargs")  # other leftover keys are dropped, as in Beam
            elif payload:
                kwargs = payload
    if query:
        grouped: dict[str, list[str]] = {}
        for key, value in query:
            grouped.setdefault(key, []).append(value)
        for key, values in grouped.items():
            if len(values) == 1:
                kwargs[key] = _numeric(values[0])
            else:
                converted = [_numeric(v) for v in values]
                kwargs[key] = converted if all(type(c) is float for c in converted) else values
    return args, kwargs


def _numeric(text: str) -> Any:
    """Go's ``strconv.ParseFloat`` semantics: a float when it parses, the string otherwise."""
    if not text or not text.isascii() or "_" in text or text[0].isspace() or text[-1].isspace():
        return text
    try:
        value = float(text)
    except ValueError:
        return text
    if math.isinf(value) and "inf" not in text.lower():  # Go reports overflow as an error
        return text
    return value


# --------------------------------------------------------------------------------------------------
# Small ASGI helpers
# --------------------------------------------------------------------------------------------------


def _dumps(value: Any) -> bytes:
    """Starlette JSONResponse's compact form, with ``str`` for what JSON cannot encode."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str).encode("utf-8")


def _event(item: Any) -> bytes:
    """One streamed item as Beam frames it: ``data: <json>\\n\\n``; non-dicts wrapped in ``{"data": …}``."""
    if not isinstance(item, dict):
        item = {"data": item}
    return b"data: " + json.dumps(item, default=str).encode("utf-8") + b"\n\n"


_JSON = (b"content-type", b"application/json")


async def _send_json(send: Send, status: int, body: bytes, headers: tuple = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [_JSON, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _send_error(send: Send, status: int, message: str, headers: tuple = ()) -> None:
    await _send_json(send, status, _dumps({"error": message}), headers)


_HEALTH = _dumps({"status": "ok"})
_NOT_FOUND = _dumps({"error": "not found"})
_UNAUTHORIZED = _dumps({"error": "Unauthorized"})
_TOO_LARGE = _dumps({"error": "payload too large"})
_BAD_PAYLOAD = _dumps({"error": "invalid request payload"})
_METHOD_NOT_ALLOWED = _dumps({"error": "method not allowed"})


async def _send_empty(send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def _relative(scope: Scope) -> str:
    """The path below the mount point, whether or not the server kept ``root_path`` in ``path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def _headers(scope: Scope) -> dict[bytes, bytes]:
    return {key.lower(): value for key, value in scope.get("headers", ())}


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class _TimedOut(Exception):
    pass


async def _read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, never more than ``limit`` bytes (raises ``_TooLarge``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise _TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _declared_too_large(headers: dict[bytes, bytes], limit: int) -> bool:
    value = headers.get(b"content-length")
    if value is None:
        return False
    try:
        return int(value) > limit
    except ValueError:
        return False


async def _ws_reject(scope: Scope, receive: Receive, send: Send, status: int, body: bytes) -> None:
    """Refuse a WebSocket handshake so that clients can see why (see the module docstring)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [_JSON, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.accept"})
    reason = "Unauthorized" if status == 401 else "not found"
    await send({"type": "websocket.close", "code": 4000 + status, "reason": reason})


def _is_asgi3(app: Any) -> bool:
    """Beam's check: a coroutine function, or an object whose ``__call__`` is one."""
    if inspect.isclass(app) or not callable(app):
        return False
    if inspect.iscoroutinefunction(app):
        return True
    return inspect.iscoroutinefunction(getattr(app, "__call__", None))


def _is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)


def _consume(task: asyncio.Future) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


# --------------------------------------------------------------------------------------------------
# Concurrency slots and handler invocation
# --------------------------------------------------------------------------------------------------


class _Slot:
    """One of ``concurrency`` permits; a thread that outlives its request keeps it until it returns."""

    __slots__ = ("_sem", "_released", "_detached")

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem = sem
        self._released = False
        self._detached = False

    @property
    def detached(self) -> bool:
        return self._detached

    def release(self) -> None:
        if not self._released and not self._detached:
            self._released = True
            self._sem.release()

    def detach(self, future: Future) -> None:
        """Hand the permit to a still-running thread: it is released when that thread finishes."""
        if self._detached or self._released:
            return
        self._detached = True
        loop = asyncio.get_running_loop()

        def done(_: Future) -> None:
            try:
                loop.call_soon_threadsafe(self._sem.release)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass

        future.add_done_callback(done)


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
        self._concurrency = concurrency
        self._timeout = timeout if timeout and timeout > 0 else None
        self._max_body = max_body_bytes
        self._sem = asyncio.Semaphore(concurrency)
        self._pool_: ThreadPoolExecutor | None = None
        self._app: ASGIApp | None = handler if kind == "asgi" else None
        if kind == "asgi":
            return
        self._wants_context = wants_context(handler)
        self._is_async = _is_async_callable(handler)
        # Calling a generator function runs none of its code: do it on the loop, iterate in threads.
        self._call_inline = inspect.isgeneratorfunction(handler) or inspect.isasyncgenfunction(handler)
        if kind == "realtime":
            self._event_arg = _event_argument(handler)

    # ---- plumbing -----------------------------------------------------------------------------

    @staticmethod
    def _callback(url: str | None, task_id: str, status: str, data: Any) -> None:
        """Send Beam's signed task callback in the background: it must never delay or fail the response."""
        if url:
            from beamray import callbacks

            asyncio.get_running_loop().run_in_executor(None, callbacks.send, url, task_id, status, data)

    def _pool(self) -> ThreadPoolExecutor:
        if self._pool_ is None:
            self._pool_ = ThreadPoolExecutor(max_workers=self._concurrency, thread_name_prefix="beamray-handler")
        return self._pool_

    def _deadline(self) -> float | None:
        return None if self._timeout is None else asyncio.get_running_loop().time() + self._timeout

    @staticmethod
    def _remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())

    def _timeout_message(self) -> str:
        return f"Task timed out after {self._timeout:g}s"

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        if self._authorize is None:
            return True
        value = headers.get(b"authorization")
        return bool(self._authorize(None if value is None else value.decode("latin-1")))

    async def _acquire(self, deadline: float | None) -> _Slot:
        if deadline is None or not self._sem.locked():
            await self._sem.acquire()
        else:
            try:
                await asyncio.wait_for(self._sem.acquire(), self._remaining(deadline))
            except asyncio.TimeoutError:
                raise _TimedOut from None
        return _Slot(self._sem)

    async def _in_thread(self, func: Callable[[], Any], slot: _Slot, deadline: float | None) -> Any:
        """Run ``func`` in the handler pool; on timeout or cancellation the thread keeps the slot."""
        cfut = self._pool().submit(contextvars.copy_context().run, func)
        afut = asyncio.wrap_future(cfut)
        try:
            done, _ = await asyncio.wait((afut,), timeout=self._remaining(deadline))
        except BaseException:
            slot.detach(cfut)
            afut.cancel()
            raise
        if not done:
            slot.detach(cfut)
            afut.cancel()
            raise _TimedOut
        return afut.result()

    async def _on_loop(self, awaitable: Awaitable[Any], deadline: float | None) -> Any:
        """Await user code, cancelling it at the deadline (a ``TimeoutError`` it raises stays a 500)."""
        if deadline is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait((task,), timeout=self._remaining(deadline))
        except BaseException:
            task.cancel()
            task.add_done_callback(_consume)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(_consume)
            raise _TimedOut
        return task.result()

    async def _call(self, func: Callable[[], Any], slot: _Slot, deadline: float | None) -> Any:
        """Call the handler the way its kind needs: awaited, inline, or in a thread."""
        if self._is_async:
            return await self._on_loop(func(), deadline)
        result = func() if self._call_inline else await self._in_thread(func, slot, deadline)
        if inspect.isawaitable(result):
            result = await self._on_loop(result, deadline)
        return result

    async def _items(self, result: Any, slot: _Slot, deadline: float | None):
        """Yield a generator's items, sync ones pulled in the handler pool, all under the deadline."""
        if inspect.isasyncgen(result):
            while True:
                try:
                    yield await self._on_loop(result.__anext__(), deadline)
                except StopAsyncIteration:
                    return
        else:
            end = object()
            pull = functools.partial(next, result, end)
            while True:
                item = await self._in_thread(pull, slot, deadline)
                if item is end:
                    return
                yield item

    def _close_generator(self, result: Any, slot: _Slot) -> None:
        """Best-effort close of an abandoned generator (runs its ``finally`` blocks)."""
        if inspect.isasyncgen(result):
            task = asyncio.ensure_future(result.aclose())
            task.add_done_callback(_consume)
        elif not slot.detached:  # a detached generator is still executing in its thread
            self._pool().submit(result.close).add_done_callback(lambda f: f.exception())

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
                if self._pool_ is not None:
                    self._pool_.shutdown(wait=False)
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = _relative(scope)
        method = scope["method"]
        if rel == "/health" and method in ("GET", "HEAD"):
            if self._app is not None:
                await self._asgi_health(scope, receive, send, rel)
            else:
                await _send_json(send, 200, _HEALTH)
            return
        headers = _headers(scope)
        if not self._authorized(headers):
            await _send_json(send, 401, _UNAUTHORIZED)
            return
        if rel == "/warmup" and method == "POST":
            await _send_empty(send)
            return
        if self._app is not None:
            await self._asgi_http(scope, receive, send, headers, rel)
            return
        if rel == "/" and self._kind == "endpoint":
            if method not in ("GET", "POST"):
                await _send_json(send, 405, _METHOD_NOT_ALLOWED, ((b"allow", b"GET, POST"),))
                return
            await self._endpoint(scope, receive, send, headers)
        elif rel == "/" and self._kind == "realtime":
            await _send_error(send, 426, "websocket required", ((b"upgrade", b"websocket"),))
        elif rel in ("/health", "/warmup"):
            allow = b"GET, HEAD" if rel == "/health" else b"POST"
            await _send_json(send, 405, _METHOD_NOT_ALLOWED, ((b"allow", allow),))
        else:
            await _send_json(send, 404, _NOT_FOUND)

    # ---- endpoint -----------------------------------------------------------------------------

    async def _endpoint(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes]) -> None:
        if _declared_too_large(headers, self._max_body):
            await _send_json(send, 413, _TOO_LARGE)
            return
        try:
            body = await _read_body(receive, self._max_body)
        except _TooLarge:
            await _send_json(send, 413, _TOO_LARGE)
            return
        except _Disconnected:
            return
        query_string: bytes = scope.get("query_string", b"")
        query = parse_qsl(query_string.decode("utf-8", "replace"), keep_blank_values=True) if query_string else []
        try:
            args, kwargs = parse_payload(body, query)
        except PayloadError:
            await _send_json(send, 400, _BAD_PAYLOAD)
            return

        raw_id = headers.get(b"x-task-id")
        if raw_id:
            task_id = raw_id.decode("latin-1")
        else:
            task_id = str(uuid.uuid4())
            raw_id = task_id.encode()
        echo = ((b"x-task-id", raw_id),)

        deadline = self._deadline()
        try:
            slot = await self._acquire(deadline)
        except _TimedOut:
            await _send_error(send, 504, self._timeout_message(), echo)
            return
        # Beam's endpoint runner leaves a request-level callback_url in the handler's kwargs.
        callback_url = kwargs.get("callback_url") if isinstance(kwargs.get("callback_url"), str) else None
        callback_url = callback_url or self._callback_url
        try:
            try:
                if self._wants_context:
                    kwargs["context"] = self._make_context(task_id)
                result = await self._call(functools.partial(self._handler, *args, **kwargs), slot, deadline)
            except _TimedOut:
                self._callback(callback_url, task_id, "TIMEOUT", {})
                await _send_error(send, 504, self._timeout_message(), echo)
                return
            except Exception:
                error = traceback.format_exc()
                logger.error("handler failed (task %s)\n%s", task_id, error)
                self._callback(callback_url, task_id, "ERROR", {})
                await _send_error(send, 500, error, echo)
                return
            if not isinstance(result, Response) and not inspect.isgenerator(result) and not inspect.isasyncgen(result):
                self._callback(callback_url, task_id, "COMPLETE", result)

            if isinstance(result, Response):
                await result(scope, receive, send)
            elif inspect.isgenerator(result) or inspect.isasyncgen(result):
                await self._stream(result, receive, send, echo, slot, deadline, task_id)
            else:
                try:
                    body = _dumps(result)
                except Exception:
                    error = traceback.format_exc()
                    logger.error("response serialization failed (task %s)\n%s", task_id, error)
                    await _send_error(send, 500, error, echo)
                    return
                await _send_json(send, 200, body, echo)
        finally:
            slot.release()

    async def _stream(
        self,
        result: Any,
        receive: Receive,
        send: Send,
        echo: tuple,
        slot: _Slot,
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
        items = self._items(result, slot, deadline)
        finished = False
        try:
            async for item in items:
                if gone.done():
                    return
                await send({"type": "http.response.body", "body": _event(item), "more_body": True})
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except _TimedOut:
            logger.error("streamed response timed out (task %s)", task_id)
            raise TimeoutError(self._timeout_message()) from None
        finally:
            gone.cancel()
            gone.add_done_callback(_consume)
            await items.aclose()
            if not finished:
                self._close_generator(result, slot)

    # ---- realtime -----------------------------------------------------------------------------

    async def _websocket(self, scope: Scope, receive: Receive, send: Send) -> None:
        rel = _relative(scope)
        headers = _headers(scope)
        if not self._authorized(headers):
            await _ws_reject(scope, receive, send, 401, _UNAUTHORIZED)
            return
        if self._app is not None:
            await self._app(self._mounted(scope, rel), receive, send)
            return
        if self._kind != "realtime" or rel != "/":
            await _ws_reject(scope, receive, send, 404, _NOT_FOUND)
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
        except _Disconnected:
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
        deadline = self._deadline()
        try:
            slot = await self._acquire(deadline)
        except _TimedOut:
            await _ws_send(send, _error_frame(self._timeout_message()))
            return
        result = None
        try:
            result = await self._call(func, slot, deadline)
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                items = self._items(result, slot, deadline)
                try:
                    async for item in items:
                        await _ws_send(send, _ws_message(item))
                finally:
                    await items.aclose()
                result = None
            else:
                await _ws_send(send, _ws_message(result))
        except _Disconnected:
            raise
        except _TimedOut:
            await _ws_send(send, _error_frame(self._timeout_message()))
        except Exception:
            error = traceback.format_exc()
            logger.error("realtime handler failed\n%s", error)
            await _ws_send(send, _error_frame(error))
        finally:
            if inspect.isgenerator(result) or inspect.isasyncgen(result):
                self._close_generator(result, slot)
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
            await _send_json(send, 200, _HEALTH)

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
        if _declared_too_large(headers, self._max_body):
            await _send_json(send, 413, _TOO_LARGE)
            return
        raw_id = headers.get(b"x-task-id") or str(uuid.uuid4()).encode()
        echo = ((b"x-task-id", raw_id),)
        limit = self._max_body
        deadline = self._deadline()
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
            slot = await self._acquire(deadline)
        except _TimedOut:
            await _send_error(send, 504, self._timeout_message(), echo)
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
                            (task, started), timeout=self._remaining(deadline), return_when=asyncio.FIRST_COMPLETED
                        )
                    except BaseException:
                        task.cancel()
                        task.add_done_callback(_consume)
                        raise
                    if not task.done() and not state["started"]:
                        task.cancel()
                        task.add_done_callback(_consume)
                        if not state["too_large"]:
                            await _send_error(send, 504, self._timeout_message(), echo)
                            return
                    else:
                        await task
            except Exception:
                if state["started"] or not state["too_large"]:
                    raise
            if state["too_large"] and not state["started"]:
                await _send_json(send, 413, _TOO_LARGE)
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
    return {"type": "websocket.send", "text": _dumps(value).decode("utf-8")}


async def _ws_send(send: Send, message: Message | None) -> None:
    if message is None:
        return
    try:
        await send(message)
    except Exception:  # the client went away (servers raise OSError/RuntimeError subclasses)
        raise _Disconnected from None


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
    if kind == "asgi" and not _is_asgi3(handler):
        raise TypeError("Invalid ASGI app returned from handler")
    if kind != "asgi" and not callable(handler):
        raise TypeError(f"{kind} handler must be callable, got {type(handler).__name__}")
    return _Bridge(kind, handler, make_context, authorize, concurrency, timeout, max_body_bytes, callback_url)
