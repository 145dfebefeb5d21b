"""The gateway under hostile or broken input, over real HTTP on the session cluster: registry loads stay
rate-limited, refusals come before the body is read, slow bodies and crowds of one client are cut off,
bad query strings are 400s, subscriptions end when their client leaves, and a task store that is down
answers 503 with ``Retry-After``."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from beamray import config, secrets
from beamray import deploy as orchestrator
from beamray.serve_bridge import gateway as gateway_module
from beamray.serve_bridge import gateway_routes
from tests.apps import tasks_app, web_app

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
ENDPOINT, QUEUE = "gwlimits-ep", "gwlimits-q"


def stats() -> dict[str, int]:
    from ray import serve

    from beamray.serve_bridge.apps import GATEWAY_APP

    return serve.get_app_handle(GATEWAY_APP).options(method_name="stats").remote().result()


def wait_until(check, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def deployed(gateway):
    orchestrator.deploy(web_app.multiply.parent.spec_for(web_app.multiply.func, ENDPOINT), code_root=REPO)
    orchestrator.deploy(tasks_app.blocking.parent.spec_for(tasks_app.blocking.func, QUEUE), code_root=REPO)
    yield gateway
    for name in (ENDPOINT, QUEUE):
        orchestrator.stop(name)


def open_request(head: str, body: bytes = b"", timeout: float = 10.0) -> socket.socket:
    """A raw HTTP/1.1 request (so that a body can be announced and never sent); the socket to read from."""
    sock = socket.create_connection(("127.0.0.1", config.http_port()), timeout=timeout)
    sock.sendall(head.encode("latin-1") + b"\r\n" + body)
    return sock


def status_of(sock: socket.socket) -> tuple[int, bytes]:
    """The status code and the whole response (its head, then a Content-Length or chunked body)."""
    data = b""
    with sock:
        while not _complete(data):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    return int(data.split(b" ", 2)[1]), data


def _complete(data: bytes) -> bool:
    head, found, body = data.partition(b"\r\n\r\n")
    if not found:
        return False
    fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:] if b":" in line)
    if b"chunked" in fields.get(b"transfer-encoding", b""):
        return body.endswith(b"0\r\n\r\n")
    return len(body) >= int(fields.get(b"content-length", b"0"))


def head_for(method: str, path: str, length: int | None = None, token: bool = True) -> str:
    lines = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{config.http_port()}"]
    if token:
        lines.append(f"Authorization: Bearer {secrets.gateway_token()}")
    if length is not None:
        lines += ["Content-Type: application/json", f"Content-Length: {length}"]
    return "\r\n".join(lines) + "\r\n"


def test_unknown_urls_share_rate_limited_registry_loads(deployed):
    before = stats()["registry_loads"]
    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(25) as pool:
        codes = list(pool.map(lambda i: deployed.post(f"/endpoint/nothing-{i}", json={}).status_code, range(200)))
    elapsed = time.monotonic() - started
    loads = stats()["registry_loads"] - before
    assert codes == [404] * 200
    assert loads <= elapsed / gateway_routes.MIN_REFRESH_S + 2, (loads, elapsed)
    # the same URLs still find what is deployed, through the alias
    assert deployed.post(f"/endpoint/{ENDPOINT}", json={"x": 2}).json() == {"result": 4}


def test_missing_token_is_refused_before_the_body_arrives(deployed):
    # the gateway's own route, and an endpoint's alias URL (routed straight to its replica)
    for path in (f"/taskqueue/{QUEUE}", f"/endpoint/{ENDPOINT}"):
        started = time.monotonic()
        sock = open_request(head_for("POST", path, length=1_000_000, token=False))
        code, response = status_of(sock)  # nothing of the announced megabyte was sent
        body = response.split(b"\r\n\r\n", 1)[1].replace(b'": "', b'":"')  # either JSON spacing, maybe chunked
        assert code == 401 and b'{"error":"Unauthorized"}' in body, (path, response)
        assert time.monotonic() - started < 8, path
    wrong = httpx.post(f"{str(deployed.base_url).rstrip('/')}/endpoint/{ENDPOINT}", json={"x": 1},
                       headers={"Authorization": "Bearer wrong"})
    assert wrong.status_code == 401
    assert deployed.get(f"/endpoint/{ENDPOINT}/health").status_code == 200  # health needs no token there


def test_announced_oversize_body_is_refused_unread(deployed):
    for path in (f"/endpoint/{ENDPOINT}", f"/taskqueue/{QUEUE}"):
        sock = open_request(head_for("POST", path, length=16 * 2**20 + 1))
        code, response = status_of(sock)
        assert code == 413 and b"payload too large" in response, path


def test_a_body_that_never_completes_times_out_with_408(deployed):
    limit = float(os.environ["BEAMRAY_BODY_TIMEOUT_S"])  # the suite's cluster sets it (tests/conftest.py)
    started = time.monotonic()
    sock = open_request(head_for("POST", f"/taskqueue/{QUEUE}", length=100), b'{"seconds": ', timeout=limit + 20)
    code, _ = status_of(sock)
    assert code == 408 and limit - 1 <= time.monotonic() - started < limit + 15


def test_one_client_gets_429_past_its_in_flight_cap(deployed):
    cap = gateway_module.MAX_IN_FLIGHT_PER_CLIENT
    # The gateway's routes (task queues, id URLs, the task API); versioned and alias endpoint URLs go
    # straight to their replicas, which bound their own concurrency.
    slow = [open_request(head_for("POST", f"/taskqueue/{QUEUE}", length=100), b"{", timeout=60)
            for _ in range(cap)]
    try:
        wait_until(lambda: stats()["in_flight"] >= cap, timeout=20)
        crowded = deployed.post(f"/taskqueue/{QUEUE}", json={"seconds": 0})
        assert crowded.status_code == 429 and "too many" in crowded.json()["error"]
    finally:
        for sock in slow:
            sock.close()
    wait_until(lambda: stats()["in_flight"] == 0)
    assert deployed.post(f"/endpoint/{ENDPOINT}", json={"x": 1}).json() == {"result": 2}


def test_non_utf8_query_string_is_a_400(deployed):
    # uvicorn (Serve's proxy) refuses raw non-ASCII request targets itself, so the gateway app is driven
    # directly, with the scope another ASGI server could hand it, against the deployed queue's record.
    sock = open_request(head_for("POST", f"/taskqueue/{QUEUE}?x=\xff\xfe", length=2), b"{}")
    assert status_of(sock)[0] == 400
    scope = {"type": "http", "method": "POST", "path": f"/taskqueue/{QUEUE}", "query_string": b"x=\xff\xfe",
             "headers": [(b"authorization", f"Bearer {secrets.gateway_token()}".encode())], "client": ("1.2.3.4", 1)}
    sent: list[dict] = []

    async def receive() -> dict:
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: dict) -> None:
        sent.append(message)

    asyncio.run(gateway_module.GatewayApp()(scope, receive, send))
    assert sent[0]["status"] == 400 and json.loads(sent[1]["body"]) == {"error": "invalid request payload"}


def test_subscription_polls_gently_and_ends_when_its_client_leaves(deployed):
    task_id = deployed.post(f"/taskqueue/{QUEUE}", json={"seconds": 60}).json()["task_id"]
    try:
        before, started = stats()["polls"], time.monotonic()
        with deployed.stream("GET", f"/v2/task/{task_id}/subscribe") as stream:
            lines = stream.iter_lines()
            assert next(lines) == "event: status"
            wait_until(lambda: stats()["subscriptions"] == 1, timeout=10)
            time.sleep(4)
            polls, elapsed = stats()["polls"] - before, time.monotonic() - started
        assert polls <= elapsed / gateway_module.POLL_MAX_S + 8, (polls, elapsed)  # 0.1 s polling: 5 times more
        wait_until(lambda: stats()["subscriptions"] == 0, timeout=10)
        settled = stats()["polls"]
        time.sleep(2)
        assert stats()["polls"] == settled
    finally:
        deployed.request("DELETE", "/v2/task/cancel/", json={"task_ids": [task_id]})


def test_task_store_down_answers_503_with_retry_after(deployed):
    running = deployed.post(f"/taskqueue/{QUEUE}", json={"seconds": 60}).json()["task_id"]
    store = sqlite3.connect(config.home() / "store.db", timeout=30, isolation_level=None)
    store.execute("CREATE TRIGGER gwlimits_down BEFORE INSERT ON kv WHEN NEW.key LIKE 'tasks/%' "
                  "BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END")
    try:
        refused = deployed.post(f"/taskqueue/{QUEUE}", json={"seconds": 1})
        assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
        assert "unreachable" in refused.json()["error"]
        cancel = deployed.request("DELETE", "/v2/task/cancel/", json={"task_ids": [running]})
        assert cancel.status_code == 503 and cancel.headers["retry-after"] == "1" and cancel.json()["error"]
    finally:
        store.execute("DROP TRIGGER gwlimits_down")
        store.close()
    deployed.request("DELETE", "/v2/task/cancel/", json={"task_ids": [running]})
