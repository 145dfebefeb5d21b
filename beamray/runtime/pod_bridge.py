"""Run a pod's entrypoint and make its ports reachable as Unix sockets: ``<socket dir>/<port>.sock``.

Started by ``runtime.pod`` as ``python pod_bridge.py SOCKET_DIR PORTS -- ENTRYPOINT…``, inside the pod's
own network namespace (``bwrap --unshare-net``) where bubblewrap is present: every pod then owns its
ports as a Beam container does (two pods can both listen on 8000, the gateway's port too), and the
only way in is through the socket files, which live on the shared filesystem. Each socket appears once
its port accepts connections (that is the pod's readiness) and relays every connection to
``127.0.0.1:PORT`` byte for byte. The bridge exits with the entrypoint's exit code.

Standard library only: it starts before anything else and imports nothing of beamray.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


async def _relay(port: int, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
    except OSError:
        client_writer.close()
        return
    await asyncio.gather(pipe(client_reader, writer), pipe(reader, client_writer))
    writer.close()
    client_writer.close()


async def _expose(port: int, socket_dir: str, child: subprocess.Popen) -> None:
    """Wait until ``port`` listens, then serve its socket file (bound aside, renamed into place)."""
    while child.poll() is None:
        try:
            _, probe = await asyncio.open_connection("127.0.0.1", port)
            probe.close()
            break
        except OSError:
            await asyncio.sleep(0.01)
    else:
        return
    final = os.path.join(socket_dir, f"{port}.sock")
    staging = final + ".new"
    server = await asyncio.start_unix_server(lambda r, w: _relay(port, r, w), path=staging, limit=1 << 20)
    os.rename(staging, final)
    async with server:
        await server.serve_forever()


def _die_with_bridge() -> None:
    """In the entrypoint's process, before exec: SIGKILL it when the bridge dies (Linux's PDEATHSIG)."""
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


async def _orphaned(parent: int, child: subprocess.Popen) -> None:
    """End the pod when the container that started the bridge is gone (its actor process was killed)."""
    while child.poll() is None:
        if os.getppid() != parent:
            os.killpg(os.getpgrp(), signal.SIGKILL)  # the entrypoint, what it started, and this bridge
        await asyncio.sleep(0.5)


async def _network_ready(ready_file: str) -> None:
    """Wait (bounded) until the container attached the pod's outbound network (``runtime.pod_network``)."""
    for _ in range(3000):
        if os.path.exists(ready_file):
            return
        await asyncio.sleep(0.005)


async def _main(socket_dir: str, ports: list[int], command: list[str]) -> int:
    ready_file = os.environ.pop("BEAMRAY_POD_NETWORK_READY", "")
    if ready_file:
        await _network_ready(ready_file)
    child = subprocess.Popen(command, preexec_fn=_die_with_bridge)
    watch = asyncio.ensure_future(_orphaned(os.getppid(), child))
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, child.send_signal, signum)
    servers = [asyncio.ensure_future(_expose(port, socket_dir, child)) for port in ports]
    code = await loop.run_in_executor(None, child.wait)
    for server in (*servers, watch):
        server.cancel()
    return code if code >= 0 else 128 - code


if __name__ == "__main__":
    directory, port_list, separator, *entrypoint = sys.argv[1:]
    assert separator == "--", "usage: pod_bridge.py SOCKET_DIR PORTS -- ENTRYPOINT…"
    try:
        sys.exit(asyncio.run(_main(directory, [int(p) for p in port_list.split(",") if p], entrypoint)))
    except FileNotFoundError as missing:
        print(f"cannot start entrypoint {entrypoint}: {missing.strerror}: {missing.filename}", file=sys.stderr)
        sys.exit(127)
