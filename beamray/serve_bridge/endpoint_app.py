"""The replica app of ``@endpoint``: JSON (or query) in, the handler's JSON, Response or ``data:`` stream out.

Payloads, framing and limits are ``asgi.py``'s; concurrency and deadlines are ``runner.py``'s (the
timeout also covers a streamed generator response). Each call ends with Beam's signed task callback.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
import traceback
import uuid
from typing import Any
from urllib.parse import parse_qsl

from starlette.responses import Response

from beamray.serve_bridge.asgi import (BAD_PAYLOAD, METHOD_NOT_ALLOWED, TOO_LARGE, Disconnected, PayloadError,
                                       Receive, Scope, Send, TooLarge, declared_too_large, dumps, event_frame,
                                       parse_payload, read_body, send_error, send_json)
from beamray.serve_bridge.runner import Slot, TimedOut, consume
from beamray.serve_bridge.web_app import WebApp

logger = logging.getLogger(__name__)


class EndpointApp(WebApp):
    """Serves ``GET``/``POST /`` by calling the handler with the request's arguments."""

    @staticmethod
    def _callback(url: str | None, task_id: str, status: str, data: Any) -> None:
        """Send Beam's signed task callback in the background: it must never delay or fail the response."""
        if url:
            from beamray import callbacks

            asyncio.get_running_loop().run_in_executor(None, callbacks.send, url, task_id, status, data)

    async def _route(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                     rel: str) -> None:
        if rel != "/":
            await super()._route(scope, receive, send, headers, rel)
        elif scope["method"] not in ("GET", "POST"):
            await send_json(send, 405, METHOD_NOT_ALLOWED, ((b"allow", b"GET, POST"),))
        else:
            await self._endpoint(scope, receive, send, headers)

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

        task_id = str(uuid.uuid4())  # never the client's X-Task-Id: a caller must not pick another task's id
        echo = ((b"x-task-id", task_id.encode()),)

        deadline = self._runner.deadline()
        try:
            slot = await self._runner.acquire(deadline)
        except TimedOut:
            await send_error(send, 504, self._runner.timeout_message(), echo)
            return
        # Beam's endpoint runner leaves a request-level callback_url in the handler's kwargs. It is followed
        # only for callers that proved the token: from anyone it would make the cluster POST signed
        # requests wherever that caller likes (a public endpoint keeps its deployment-level callback).
        requested = kwargs.get("callback_url") if self._authorize is not None else None
        callback_url = (requested if isinstance(requested, str) else None) or self._callback_url
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
