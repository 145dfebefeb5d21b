"""A pod's ports for callers on other nodes: a TCP door to each Unix socket, opened by the pod's key.

A pod with a network of its own is reached through Unix sockets (``runtime.pod_bridge``), and those exist
on the pod's node only. The ``/pod`` Serve replica may run on another node of a multi-node cluster
(KubeRay: the pod on a GPU worker, the replica on the head), so the container also listens on its node's
address, one TCP port per pod port, and relays each connection to the socket.

Only the ``/pod`` app may come in: a connection's first request must carry ``RELAY_HEADER`` with the
container's random key (kept in the port registry, in Ray's internal KV), else it gets a 403 and is
closed. The header is taken out before the request reaches the pod. The embedded head's node address is
127.0.0.1, so there the door is on loopback like everything else.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import threading

from beamray.runtime.pod_bridge import pipe

RELAY_HEADER = "X-Beamray-Relay"
_HEADER = RELAY_HEADER.lower().encode()
_REFUSED = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


def _admitted(head: bytes, key: bytes) -> bytes | None:
    """The request head without the relay header when it carries ``key``; None otherwise."""
    lines = head.split(b"\r\n")
    for index, line in enumerate(lines[1:], start=1):
        name, _, value = line.partition(b":")
        if name.strip().lower() == _HEADER and hmac.compare_digest(value.strip(), key):
            return b"\r\n".join(lines[:index] + lines[index + 1:])
    return None


class Relay:
    """The TCP doors of one container, served from a thread of its own until ``close()``."""

    def __init__(self, host: str, sockets: dict[int, str]) -> None:
        self.key = secrets.token_urlsafe(24)
        self._loop = asyncio.new_event_loop()
        self._servers: list[asyncio.AbstractServer] = []
        threading.Thread(target=self._loop.run_forever, name="pod-relay", daemon=True).start()
        self.addresses = {port: asyncio.run_coroutine_threadsafe(self._open(host, path), self._loop).result(10)
                          for port, path in sockets.items()}

    async def _open(self, host: str, path: str) -> str:
        server = await asyncio.start_server(lambda r, w: self._admit(path, r, w), host=host, port=0)
        self._servers.append(server)
        return f"{host}:{server.sockets[0].getsockname()[1]}"

    async def _admit(self, path: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")  # at most the reader's 64 KiB limit
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        admitted = _admitted(head, self.key.encode())
        if admitted is None:
            writer.write(_REFUSED)
            writer.close()
            return
        try:
            pod_reader, pod_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return
        pod_writer.write(admitted)
        await asyncio.gather(pipe(reader, pod_writer), pipe(pod_reader, writer))
        pod_writer.close()
        writer.close()

    def close(self) -> None:
        async def stop() -> None:
            for server in self._servers:
                server.close()
            open_connections = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
            for task in open_connections:
                task.cancel()
            await asyncio.gather(*open_connections, return_exceptions=True)
            self._loop.stop()

        asyncio.run_coroutine_threadsafe(stop(), self._loop)
