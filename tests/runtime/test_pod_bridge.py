"""The pod bridge and the port proxy without a cluster: a real http.server behind a Unix socket, reached
through ``port_proxy.forward`` as the pods app does, and the entrypoint's exit code passed through."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time

from beamray.runtime import pod
from beamray.serve_bridge import port_proxy
from beamray.serve_bridge.relay import RELAY_HEADER, Relay
from tests.conformance.support import wait_for


def _bridge(tmp_path, ports: str, *entrypoint: str) -> subprocess.Popen:
    command = pod._command(entrypoint, str(tmp_path), tuple(int(p) for p in ports.split(",") if p), None)
    return subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def _asgi_get(upstream: port_proxy.Upstream, port: int, path: str, from_node: str) -> tuple[list[dict], str]:
    """``GET path`` forwarded as the pods app does from a replica on ``from_node``: the ASGI messages sent
    back, and the URL the request went to."""
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    async def go() -> str:
        sessions = port_proxy.Sessions(from_node, "127.0.0.1")
        session, url = sessions.route(upstream, port, path, b"")
        scope = {"type": "http", "method": "GET", "path": path, "headers": [(b"host", b"x")]}
        await port_proxy.forward(scope, receive, send, url, session)
        await sessions.forget(upstream)
        return url

    return sent, asyncio.run(go())


def test_a_port_is_reached_through_its_socket_and_forwarded_as_asgi(tmp_path):
    (tmp_path / "hello.txt").write_text("hi from the pod\n")
    port = 18431
    bridge = _bridge(tmp_path, str(port), sys.executable, "-m", "http.server", str(port))
    try:
        socket_path = str(tmp_path / f"{port}.sock")
        wait_for(lambda: os.path.exists(socket_path), timeout=20, what="the bridge's socket")
        upstream = port_proxy.Upstream("pod-test", "127.0.0.1", (port,), False, {port: socket_path})
        sent, url = _asgi_get(upstream, port, "/hello.txt", from_node="the-pods-node")
        assert url == f"http://127.0.0.1:{port}/hello.txt"
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


ECHO_HEADERS = """
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = str(self.headers).lower().encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""


def _raw_get(address: str, extra: bytes = b"") -> bytes:
    host, port = address.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as conn:
        conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n" + extra + b"Connection: close\r\n\r\n")
        return b"".join(iter(lambda: conn.recv(65536), b""))


def test_a_pod_on_another_node_is_reached_through_its_relay_with_its_key_only(tmp_path):
    (tmp_path / "echo.py").write_text(ECHO_HEADERS)
    port = 18432
    bridge = _bridge(tmp_path, str(port), sys.executable, "echo.py", str(port))
    relay = None
    try:
        socket_path = str(tmp_path / f"{port}.sock")
        wait_for(lambda: os.path.exists(socket_path), timeout=20, what="the bridge's socket")
        relay = Relay("127.0.0.1", {port: socket_path})
        upstream = port_proxy.Upstream("pod-test", "127.0.0.1", (port,), False, {port: socket_path},
                                       node_id="the-pods-node", relays=relay.addresses, relay_key=relay.key)
        sent, url = _asgi_get(upstream, port, "/", from_node="another-node")
        assert url == f"http://{relay.addresses[port]}/"
        assert sent[0]["status"] == 200
        seen = b"".join(m.get("body", b"") for m in sent[1:])
        assert b"host: " in seen and RELAY_HEADER.lower().encode() not in seen  # the key stops at the relay
        assert _raw_get(relay.addresses[port]).startswith(b"HTTP/1.1 403")
        assert _raw_get(relay.addresses[port], f"{RELAY_HEADER}: wrong\r\n".encode()).startswith(b"HTTP/1.1 403")
        admitted = _raw_get(relay.addresses[port], f"{RELAY_HEADER}: {relay.key}\r\n".encode())
        assert admitted.startswith(b"HTTP/1.0 200") and b"x-beamray-relay" not in admitted
    finally:
        if relay is not None:
            relay.close()
        bridge.terminate()
        bridge.wait(10)
