"""Forward one ASGI connection (HTTP or WebSocket) to a process listening on ``host:port``.

What pods (and sandboxes' ``expose_port``) put behind the gateway. Two parts, neither knows about pods:

- a cluster-wide registry of reachable containers: ``register(container_id, host, ports, authorized)``
  when its process listens, ``unregister`` when it stops, ``lookup(container_id)`` → ``Upstream``;
  ``alias`` names the container currently serving something else (a deployed pod's stub id). It lives
  in Ray's internal KV (namespace ``beamray_ports``), so any driver or replica sees it.
- ``forward(scope, receive, send, upstream_url, session)`` (a session from ``Sessions.for_port``): HTTP bodies stream both ways chunk by chunk
  (nothing is buffered whole), WebSocket frames are relayed as they come. ``UpstreamUnavailable`` is
  raised when the process cannot be reached, before anything was sent to the client, so the caller may
  start the container and try again.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, AsyncIterator

from beamray import ray_private

if TYPE_CHECKING:
    import aiohttp
# aiohttp is imported where it is used: containers register here and should not pay for it.

_KV = ray_private.InternalKV("beamray_ports")
# Per-connection headers (RFC 9110 §7.6.1) are not forwarded; Host becomes the upstream's.
_HOP_BY_HOP = frozenset({b"connection", b"keep-alive", b"proxy-authenticate", b"proxy-authorization", b"te",
                         b"trailer", b"transfer-encoding", b"upgrade", b"host"})
_WS_HANDSHAKE = frozenset({b"sec-websocket-key", b"sec-websocket-version", b"sec-websocket-extensions",
                           b"sec-websocket-protocol"})


class UpstreamUnavailable(Exception):
    """Nothing listens at the upstream address (yet, or any more); nothing was sent to the client."""


@dataclass(frozen=True)
class Upstream:
    """Where a container's ports are reached, and whether callers need the gateway token."""

    container_id: str
    host: str
    ports: tuple[int, ...]
    authorized: bool
    sockets: dict[int, str] = field(default_factory=dict)  # port → Unix socket on ``host`` that reaches it

    def url(self, port: int, path: str, query_string: bytes = b"") -> str:
        query = f"?{query_string.decode('latin-1')}" if query_string else ""
        return f"http://{self.host}:{port}{path or '/'}{query}"


def register(container_id: str, host: str, ports: tuple[int, ...], authorized: bool, alias: str = "",
             sockets: dict[int, str] | None = None) -> None:
    """Make ``container_id`` (and ``alias``, when given) reachable at ``host`` on ``ports``; a port listed
    in ``sockets`` is reached through that Unix socket on ``host`` instead (a container with its own network)."""
    record = {"host": host, "ports": list(ports), "authorized": authorized,
              "sockets": {str(port): path for port, path in (sockets or {}).items()}}
    _KV.put(f"c/{container_id}", json.dumps(record).encode())
    if alias:
        _KV.put(f"a/{alias}", container_id.encode())


def unregister(container_id: str, alias: str = "") -> None:
    """Forget ``container_id``; ``alias`` too while it still names this container."""
    _KV.delete(f"c/{container_id}")
    if alias and _KV.get(f"a/{alias}") == container_id.encode():
        _KV.delete(f"a/{alias}")


def lookup(container_id: str) -> Upstream | None:
    found = _KV.get(f"c/{container_id}")
    if found is None:
        return None
    record = json.loads(found)
    return Upstream(container_id, record["host"], tuple(record["ports"]), bool(record["authorized"]),
                    {int(port): path for port, path in record.get("sockets", {}).items()})


def resolve_alias(alias: str) -> str | None:
    """The container id ``alias`` names now, if any."""
    found = _KV.get(f"a/{alias}")
    return found.decode() if found is not None else None


def _session(connector: aiohttp.BaseConnector) -> aiohttp.ClientSession:
    import aiohttp

    # Bodies pass untouched (no decompression); no total timeout (streams and sockets stay open).
    return aiohttp.ClientSession(auto_decompress=False, connector=connector,
                                 timeout=aiohttp.ClientTimeout(total=None, connect=10))


class Sessions:
    """Client sessions for ``forward``, one per Unix socket and one for every TCP upstream (pooled)."""

    def __init__(self) -> None:
        self._tcp: aiohttp.ClientSession | None = None
        self._unix: dict[str, aiohttp.ClientSession] = {}

    def for_port(self, upstream: Upstream, port: int, node_ip: str) -> aiohttp.ClientSession:
        import aiohttp

        path = upstream.sockets.get(port)
        if path is None:
            if self._tcp is None:
                self._tcp = _session(aiohttp.TCPConnector(limit=0))
            return self._tcp
        if upstream.host != node_ip:
            raise UpstreamUnavailable(f"container {upstream.container_id} runs on node {upstream.host}; its "
                                      f"ports are reached from that node only")
        if path not in self._unix:
            self._unix[path] = _session(aiohttp.UnixConnector(path=path, limit=0))
        return self._unix[path]

    async def forget(self, upstream: Upstream) -> None:
        """Close the sessions of a container that ended."""
        for path in upstream.sockets.values():
            session = self._unix.pop(path, None)
            if session is not None:
                await session.close()


def _headers(scope: dict[str, Any], drop: frozenset[bytes] = _HOP_BY_HOP) -> list[tuple[str, str]]:
    headers = [(key.decode("latin-1"), value.decode("latin-1")) for key, value in scope.get("headers", [])
               if key.lower() not in drop]
    client = scope.get("client")
    if client:
        headers.append(("X-Forwarded-For", client[0]))
    return headers


async def forward(scope: dict[str, Any], receive: Any, send: Any, upstream_url: str,
                  session: aiohttp.ClientSession) -> None:
    """Relay one ASGI connection (``scope["type"]`` http or websocket) to ``upstream_url``."""
    if scope["type"] == "websocket":
        await _forward_websocket(scope, receive, send, upstream_url, session)
    else:
        await _forward_http(scope, receive, send, upstream_url, session)


async def _request_body(receive: Any) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        chunk = message.get("body", b"")
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


def _has_body(scope: dict[str, Any]) -> bool:
    names = {key.lower() for key, _ in scope.get("headers", [])}
    return b"transfer-encoding" in names or b"content-length" in names


async def _forward_http(scope: dict[str, Any], receive: Any, send: Any, url: str,
                        session: aiohttp.ClientSession) -> None:
    import aiohttp

    try:
        response = await session.request(scope["method"], url, headers=_headers(scope), allow_redirects=False,
                                         data=_request_body(receive) if _has_body(scope) else None,
                                         skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"))
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(str(exc)) from exc
    async with response:
        headers = [(key, value) for key, value in response.raw_headers if key.lower() not in _HOP_BY_HOP]
        await send({"type": "http.response.start", "status": response.status, "headers": headers})
        async for chunk in response.content.iter_any():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _forward_websocket(scope: dict[str, Any], receive: Any, send: Any, url: str,
                             session: aiohttp.ClientSession) -> None:
    import aiohttp

    if (await receive())["type"] != "websocket.connect":
        return
    try:
        upstream = await session.ws_connect(url.replace("http://", "ws://", 1), autoclose=False, max_msg_size=0,
                                            protocols=tuple(scope.get("subprotocols") or ()),
                                            headers=_headers(scope, _HOP_BY_HOP | _WS_HANDSHAKE))
    except aiohttp.ClientConnectorError as exc:
        raise UpstreamUnavailable(str(exc)) from exc
    except aiohttp.WSServerHandshakeError as exc:
        await send({"type": "websocket.close", "code": 1011, "reason": f"upstream refused: {exc.status}"})
        return
    await send({"type": "websocket.accept", "subprotocol": upstream.protocol})

    async def client_to_upstream() -> None:
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                await upstream.close(code=message.get("code", 1000))
                return
            if message.get("text") is not None:
                await upstream.send_str(message["text"])
            elif message.get("bytes") is not None:
                await upstream.send_bytes(message["bytes"])

    async def upstream_to_client() -> None:
        async for message in upstream:
            if message.type == aiohttp.WSMsgType.TEXT:
                await send({"type": "websocket.send", "text": message.data})
            elif message.type == aiohttp.WSMsgType.BINARY:
                await send({"type": "websocket.send", "bytes": message.data})
            else:
                break
        await send({"type": "websocket.close", "code": upstream.close_code or 1000})

    pumps = [asyncio.ensure_future(client_to_upstream()), asyncio.ensure_future(upstream_to_client())]
    try:
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pump in pumps:
            pump.cancel()
        await upstream.close()
