"""The replica app of ``@realtime``: a WebSocket whose every message is one call of the handler.

What the handler returns is sent back: str as a text frame, bytes as a binary frame, anything else as
JSON; a generator sends one frame per item; an error becomes ``{"error": …}``.
"""

from __future__ import annotations

import functools
import inspect
import json
import logging
import traceback
import uuid
from typing import Any, Callable

from beamray.context import FunctionContext
from beamray.serve_bridge.asgi import (NOT_FOUND, Disconnected, Message, Receive, Scope, Send, dumps,
                                       send_error, ws_reject)
from beamray.serve_bridge.runner import TimedOut
from beamray.serve_bridge.web_app import WebApp

logger = logging.getLogger(__name__)


class RealtimeApp(WebApp):
    """Serves the WebSocket at ``/``; plain HTTP there answers 426."""

    def __init__(self, handler: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(handler, *args, **kwargs)
        self._event_arg = _event_argument(handler)

    async def _route(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                     rel: str) -> None:
        if rel == "/":
            await send_error(send, 426, "websocket required", ((b"upgrade", b"websocket"),))
        else:
            await super()._route(scope, receive, send, headers, rel)

    async def _socket(self, scope: Scope, receive: Receive, send: Send, headers: dict[bytes, bytes],
                      rel: str) -> None:
        if rel != "/":
            await ws_reject(scope, receive, send, 404, NOT_FOUND)
            return
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        context = self._make_context(str(uuid.uuid4())) if self._wants_context else None  # not the client's
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
