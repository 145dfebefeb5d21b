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
    node_id: str = ""  # the Ray node of ``host``: a socket is reached from that node only…
    relays: dict[int, str] = field(default_factory=dict)  # …elsewhere through this ``host:port`` (``relay``)
    relay_key: str = ""

    def url(self, port: int, path: str, query_string: bytes = b"", address: str = "") -> str:
        query = f"?{query_string.decode('latin-1')}" if query_string else ""
        return f"http://{address or f'{self.host}:{port}'}{path or '/'}{query}"


def register(container_id: str, host: str, ports: tuple[int, ...], authorized: bool, alias: str = "",
             sockets: dict[int, str] | None = None, node_id: str = "", relays: dict[int, str] | None = None,
             relay_key: str = "") -> None:
    """Make ``container_id`` (and ``alias``, when given) reachable at ``host`` on ``ports``; a port listed
    in ``sockets`` is reached through that Unix socket on ``host`` instead (a container with its own
    network), and from other nodes than ``node_id`` through its address in ``relays``."""
    record = {"host": host, "ports": list(ports), "authorized": authorized, "node_id": node_id,
              "sockets": {str(port): path for port, path in (sockets or {}).items()},
              "relays": {str(port): address for port, address in (relays or {}).items()}, "relay_key": relay_key}
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
                    {int(port): path for port, path in record.get("sockets", {}).items()}, record.get("node_id", ""),
                    {int(port): address for port, address in record.get("relays", {}).items()},
                    record.get("relay_key", ""))


def resolve_alias(alias: str) -> str | None:
    """The container id ``alias`` names now, if any."""
    found = _KV.get(f"a/{alias}")
    return found.decode() if found is not None else None


def _session(connector: aiohttp.BaseConnector, headers: dict[str, str] | None = None) -> aiohttp.ClientSession:
    import aiohttp

    # Bodies pass untouched (no decompression); no total timeout (streams and sockets stay open).
    return aiohttp.ClientSession(auto_decompress=False, connector=connector, headers=headers,
                                 timeout=aiohttp.ClientTimeout(total=None, connect=10))


class Sessions:
    """Client sessions for ``forward``: one per Unix socket, one per relay, one for every TCP upstream."""

    def __init__(self, node_id: str, node_ip: str) -> None:
        self._node_id, self._node_ip = node_id, node_ip
        self._tcp: aiohttp.ClientSession | None = None
        self._by_path: dict[str, aiohttp.ClientSession] = {}  # a Unix socket's path, or a relay's address

    def route(self, upstream: Upstream, port: int, path: str, query_string: bytes
              ) -> tuple[aiohttp.ClientSession, str]:
        """The session and URL that reach ``path`` on ``port`` of ``upstream`` from this node."""
        import aiohttp

        socket_path = upstream.sockets.get(port)
        if socket_path is None:
            if self._tcp is None:
                self._tcp = _session(aiohttp.TCPConnector(limit=0))
            return self._tcp, upstream.url(port, path, query_string)
        if upstream.node_id == self._node_id if upstream.node_id else upstream.host == self._node_ip:
            if socket_path not in self._by_path:
                self._by_path[socket_path] = _session(aiohttp.UnixConnector(path=socket_path, limit=0))
            return self._by_path[socket_path], upstream.url(port, path, query_string)
        address = upstream.relays.get(port)
        if address is None:
            raise UpstreamUnavailable(f"container {upstream.container_id} runs on node {upstream.host}; its "
                                      f"ports are reached from that node only")
        if address not in self._by_path:
            from beamray.serve_bridge.relay import RELAY_HEADER

            self._by_path[address] = _session(aiohttp.TCPConnector(limit=0), {RELAY_HEADER: upstream.relay_key})
        return self._by_path[address], upstream.url(port, path, query_string, address)

    async def forget(self, upstream: Upstream) -> None:
        """Close the sessions of a container that ended."""
        for key in (*upstream.sockets.values(), *upstream.relays.values()):
            session = self._by_path.pop(key, None)
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
