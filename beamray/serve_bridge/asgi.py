"""ASGI plumbing and Beam's HTTP conventions, shared by the replica's app and the gateway.

Beam's payload convention (``parse_payload``: ``{"args", "kwargs"}`` or the whole object as kwargs, query
parameters merged), its JSON and ``data:`` stream framing, the 16 MiB body limit, error bodies, and
WebSocket refusals clients can read. Pure ASGI: no Ray import.
"""

from __future__ import annotations

import inspect
import json
import math
from typing import Any, Awaitable, Callable, MutableMapping

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY_BYTES = 16 * 2**20  # Beam's request limit: larger bodies get 413
# Deeper JSON is refused: what is accepted is later serialised again (task records, results), and a
# depth near the interpreter's recursion limit would fail there, far from the request that caused it.
MAX_JSON_DEPTH = 100


class PayloadError(ValueError):
    """The request body is not what Beam's gateway accepts (answered with 400)."""


def _too_deep(value: Any) -> bool:
    """Whether ``value`` nests lists/objects more than ``MAX_JSON_DEPTH`` deep (iterative: no recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= MAX_JSON_DEPTH:
                    return True
                stack.append((child, depth + 1))
    return False


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
        except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError; nesting past the stack
            raise PayloadError("invalid request payload") from None
        if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and _too_deep(payload):
            raise PayloadError("invalid request payload")
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


def dumps(value: Any) -> bytes:
    """Starlette JSONResponse's compact form, with ``str`` for what JSON cannot encode. A string UTF-8
    cannot hold (a lone surrogate) is sent escaped (``\\ud800``), which JSON allows, instead of failing."""
    text = json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":"), default=str).encode("ascii")


def event_frame(item: Any) -> bytes:
    """One streamed item as Beam frames it: ``data: <json>\\n\\n``; non-dicts wrapped in ``{"data": …}``."""
    if not isinstance(item, dict):
        item = {"data": item}
    return b"data: " + json.dumps(item, default=str).encode("utf-8") + b"\n\n"


JSON_HEADER = (b"content-type", b"application/json")


async def send_json(send: Send, status: int, body: bytes, headers: tuple = ()) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [JSON_HEADER, (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, status: int, message: str, headers: tuple = ()) -> None:
    await send_json(send, status, dumps({"error": message}), headers)


HEALTH = dumps({"status": "ok"})
NOT_FOUND = dumps({"error": "not found"})
UNAUTHORIZED = dumps({"error": "Unauthorized"})
TOO_LARGE = dumps({"error": "payload too large"})
BAD_PAYLOAD = dumps({"error": "invalid request payload"})
METHOD_NOT_ALLOWED = dumps({"error": "method not allowed"})


async def send_empty(send: Send, status: int = 200) -> None:
    await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})


def relative_path(scope: Scope) -> str:
    """The path below the mount point, whether or not the server kept ``root_path`` in ``path``."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and (len(path) == len(root) or path[len(root)] == "/"):
        path = path[len(root) :]
    return path or "/"


def header_map(scope: Scope) -> dict[bytes, bytes]:
    return {key.lower(): value for key, value in scope.get("headers", ())}


class TooLarge(Exception):
    pass


class Disconnected(Exception):
    pass


async def read_body(receive: Receive, limit: int) -> bytes:
    """The whole request body, never more than ``limit`` bytes (raises ``TooLarge``)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            size += len(chunk)
            if size > limit:
                raise TooLarge
            chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def declared_too_large(headers: dict[bytes, bytes], limit: int) -> bool:
    value = headers.get(b"content-length")
    if value is None:
        return False
    try:
        return int(value) > limit
    except ValueError:
        return False


async def ws_reject(scope: Scope, receive: Receive, send: Send, status: int, body: bytes) -> None:
    """Refuse a WebSocket handshake so that clients can see why (see the module docstring)."""
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    if "websocket.http.response" in (scope.get("extensions") or {}):
        await send(
            {
                "type": "websocket.http.response.start",
                "status": status,
                "headers": [JSON_HEADER, (b"content-length", str(len(body)).encode())],
            }
        )
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.accept"})
    reason = "Unauthorized" if status == 401 else "not found"
    await send({"type": "websocket.close", "code": 4000 + status, "reason": reason})


def is_asgi3(app: Any) -> bool:
    """Beam's check: a coroutine function, or an object whose ``__call__`` is one."""
    if inspect.isclass(app) or not callable(app):
        return False
    if inspect.iscoroutinefunction(app):
        return True
    return inspect.iscoroutinefunction(getattr(app, "__call__", None))


def is_async_callable(func: Any) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)
    return not inspect.isfunction(func) and inspect.iscoroutinefunction(call)
