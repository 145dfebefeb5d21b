"""The pod bridge and the port proxy without a cluster: a real http.server behind a Unix socket, reached
through ``port_proxy.forward`` as the pods app does, and the entrypoint's exit code passed through."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time

from beamray.runtime import pod
from beamray.serve_bridge import port_proxy
from tests.conformance.support import wait_for


def _bridge(tmp_path, ports: str, *entrypoint: str) -> subprocess.Popen:
    command = pod._command(entrypoint, str(tmp_path), tuple(int(p) for p in ports.split(",") if p))
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_a_port_is_reached_through_its_socket_and_forwarded_as_asgi(tmp_path):
    (tmp_path / "hello.txt").write_text("hi from the pod\n")
    port = 18431
    bridge = _bridge(tmp_path, str(port), sys.executable, "-m", "http.server", str(port))
    try:
        socket_path = str(tmp_path / f"{port}.sock")
        wait_for(lambda: os.path.exists(socket_path), timeout=20, what="the bridge's socket")
        upstream = port_proxy.Upstream("pod-test", "127.0.0.1", (port,), False, {port: socket_path})
        sent: list[dict] = []

        async def receive():
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message):
            sent.append(message)

        async def go():
            sessions = port_proxy.Sessions()
            scope = {"type": "http", "method": "GET", "path": "/hello.txt", "headers": [(b"host", b"x")]}
            await port_proxy.forward(scope, receive, send, upstream.url(port, "/hello.txt"),
                                     sessions.for_port(upstream, port, "127.0.0.1"))
            await sessions.forget(upstream)

        asyncio.run(go())
        assert sent[0]["type"] == "http.response.start" and sent[0]["status"] == 200
        assert b"".join(m.get("body", b"") for m in sent[1:]) == b"hi from the pod\n"
        assert sent[-1]["more_body"] is False
    finally:
        bridge.terminate()
        bridge.wait(10)


def test_the_entrypoints_exit_code_and_output_come_through(tmp_path):
    bridge = _bridge(tmp_path, "", "sh", "-c", "echo going down; exit 3")
    output, _ = bridge.communicate(timeout=20)
    assert bridge.returncode == 3 and b"going down" in output


def test_a_missing_entrypoint_says_so(tmp_path):
    started = time.monotonic()
    bridge = _bridge(tmp_path, "8000", "no-such-program-here")
    output, _ = bridge.communicate(timeout=20)
    assert bridge.returncode == 127 and b"no-such-program-here" in output
    assert time.monotonic() - started < 20
