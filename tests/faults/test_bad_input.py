"""Bad input over real HTTP against a deployed endpoint and task queue: every answer is a 4xx with a JSON
error (never a 500), and a task enqueued before the bad requests still completes afterwards.

Targets: the endpoint's versioned URL (Serve's proxy straight to the replica), its alias URL (through the
gateway's ``forward``), the task queue (the gateway's enqueue) and the task API. Requests that an HTTP
client would clean up (raw bytes, ``..`` segments) go over a plain socket.
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from beamray import deploy as orchestrator
from tests.faults import bad_input_app

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]
LIMIT = 16 * 2**20
BAD_PAYLOAD = {"error": "invalid request payload"}

NESTED_OBJECT = b'{"a":' * 5000 + b"1" + b"}" * 5000
NESTED_ARRAY = b'{"args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str  # "{endpoint}", "{alias}" and "{queue}" are filled in
    body: bytes = b""
    headers: dict[str, str | bytes] = field(default_factory=dict)
    auth: bool = True
    status: tuple[int, ...] = (400,)
    error: dict | None = None  # the exact JSON body, when the contract fixes it
    xfail: str = ""


TARGETS = ("{endpoint}", "{alias}", "{queue}")
BODIES = [
    ("malformed-json", b'{"x": 1'),
    ("trailing-garbage", b'{"x": 1} x'),
    ("not-utf8", b"\xff\xfe{\x00"),
    ("nested-object-5000", NESTED_OBJECT),
    ("nested-array-100000", NESTED_ARRAY),
    ("json-array", b"[1, 2]"),
    ("json-string", b'"text"'),
    ("json-number", b"42"),
    ("json-true", b"true"),
]
TOKENS = [
    ("missing", None),
    ("wrong", "Bearer wrong-token"),
    ("bearer-only", "Bearer"),
    ("basic-scheme", "Basic dXNlcjpwYXNz"),
    ("latin1-bytes", "Bearer \xe9\xff".encode("latin-1")),
]
CASES = [
    *[Case(f"body-{name}-{target}", "POST", target, body, error=BAD_PAYLOAD) for name, body in BODIES
      for target in TARGETS],
    *[Case(f"token-{name}-{target}", "POST", target, b'{"x": 1}', {} if value is None else {"Authorization": value},
           auth=False, status=(401,), error={"error": "Unauthorized"}) for name, value in TOKENS for target in TARGETS],
    Case("cancel-malformed-json", "DELETE", "/v2/task/cancel/", b'{"task_ids": [', error=BAD_PAYLOAD),
    Case("cancel-not-a-list", "DELETE", "/v2/task/cancel/", b'{"task_ids": "abc"}', error=BAD_PAYLOAD),
    Case("cancel-json-array", "DELETE", "/v2/task/cancel/", b"[1]", error=BAD_PAYLOAD),
    Case("cancel-nested", "DELETE", "/v2/task/cancel/", NESTED_OBJECT, error=BAD_PAYLOAD),
    Case("task-api-no-token", "GET", "/v2/task/some-id/", auth=False, status=(401,), error={"error": "Unauthorized"}),
    Case("traversal-queue-encoded", "POST", "/taskqueue/..%2F..%2Fetc%2Fpasswd", b"{}", status=(404,)),
    Case("traversal-endpoint-encoded", "POST", "/endpoint/..%2F..%2Fv2%2Ftask%2Fcancel", b"{}", status=(404,)),
    Case("traversal-task-id-encoded", "GET", "/v2/task/..%2F..%2Fetc%2Fpasswd/", status=(404,)),
    Case("traversal-output-encoded", "GET", "/output/id/..%2F..%2Fsecrets.json?expires=1&sig=x", status=(403, 404)),
]


def _request_target(case: Case, urls: dict[str, str]) -> str:
    return case.path.format(**urls)


def _check_error(status: int, headers: httpx.Headers, body: bytes, case_status: tuple[int, ...]) -> dict:
    assert status in case_status, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    payload = httpx.Response(status, content=body).json()
    assert isinstance(payload.get("error"), str) and payload["error"], payload
    return payload


def wait_for_status(gateway: httpx.Client, task_id: str, status: str, timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = gateway.get(f"/v2/task/{task_id}/").json()
        if task["status"] == status:
            return task
        time.sleep(0.2)
    raise AssertionError(f"task {task_id} stayed {task['status']}, wanted {status}")


@pytest.fixture(scope="module")
def urls(gateway) -> dict[str, str]:
    endpoint = orchestrator.deploy(bad_input_app.echo.parent.spec_for(bad_input_app.echo.func), code_root=REPO)
    queue = orchestrator.deploy(bad_input_app.slow.parent.spec_for(bad_input_app.slow.func), code_root=REPO)
    base = str(gateway.base_url).rstrip("/")
    assert endpoint.url.startswith(base) and queue.kind == "taskqueue"
    return {"endpoint": endpoint.url[len(base):], "alias": "/endpoint/faults-echo", "queue": "/taskqueue/faults-slow"}


@pytest.fixture(scope="module")
def early_task(gateway, urls) -> str:
    """A task enqueued before any bad request; the last test checks that it completed."""
    response = gateway.post(urls["queue"], json={"seconds": 2})
    assert response.status_code == 200, response.text
    return response.json()["task_id"]


def test_good_requests_work_first(gateway, urls, early_task) -> None:
    assert gateway.post(urls["endpoint"], json={"x": 1}).json() == {"keys": ["x"]}
    assert gateway.post(urls["alias"], json={"x": 1}).json() == {"keys": ["x"]}


@pytest.mark.parametrize("case", [pytest.param(case, id=case.id, marks=[pytest.mark.xfail(
    reason=case.xfail, strict=True)] if case.xfail else []) for case in CASES])
def test_bad_request_answers_4xx_with_a_json_error(gateway, urls, early_task, case: Case) -> None:
    headers = {"Content-Type": "application/json", **case.headers}
    client = gateway if case.auth else httpx.Client(base_url=gateway.base_url, timeout=60)
    try:
        response = client.request(case.method, _request_target(case, urls), content=case.body, headers=headers)
    finally:
        if client is not gateway:
            client.close()
    payload = _check_error(response.status_code, response.headers, response.content, case.status)
    if case.error is not None:
        assert payload == case.error


@pytest.mark.parametrize("target", TARGETS, ids=["endpoint", "alias", "queue"])
@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_body_over_16_mib_is_413(gateway, urls, early_task, target: str, declared: bool) -> None:
    body = b" " * (LIMIT + 1)  # whitespace: valid JSON framing would not matter, the size does

    def chunks():
        for start in range(0, len(body), 1 << 20):
            yield body[start:start + (1 << 20)]

    path = target.format(**urls)
    try:
        response = gateway.post(path, content=body if declared else chunks(),
                                headers={"Content-Type": "application/json"})
    except (httpx.WriteError, httpx.RemoteProtocolError) as exc:  # answered early, then the socket closed
        pytest.fail(f"{path}: the connection broke instead of answering 413 ({exc!r})")
    payload = _check_error(response.status_code, response.headers, response.content, (413,))
    assert payload == {"error": "payload too large"}


def _raw(gateway: httpx.Client, request_line: bytes, body: bytes = b"", auth: bool = True) -> tuple[int, dict, bytes]:
    """One HTTP/1.1 request written byte for byte (no client normalizing the target)."""
    host, port = gateway.base_url.host, gateway.base_url.port
    head = [request_line, f"Host: {host}:{port}".encode(), b"Connection: close",
            f"Content-Length: {len(body)}".encode(), b"Content-Type: application/json"]
    if auth:
        head.append(f"Authorization: {gateway.headers['Authorization']}".encode())
    with socket.create_connection((host, port), timeout=60) as sock:
        sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
        data = b""
        while chunk := sock.recv(1 << 16):
            data += chunk
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    lines = head_bytes.split(b"\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        key, _, value = line.partition(b":")
        headers[key.strip().lower().decode()] = value.strip().decode("latin-1")
    if headers.get("transfer-encoding") == "chunked":
        decoded = b""
        while rest:
            size_line, _, rest = rest.partition(b"\r\n")
            size = int(size_line.split(b";")[0], 16)
            if size == 0:
                break
            decoded, rest = decoded + rest[:size], rest[size + 2:]
        rest = decoded
    return status, headers, rest


SERVER_REFUSAL = b"Invalid HTTP request received."  # uvicorn's own answer, before any app sees the request
RAW_TARGETS = [
    ("query-raw-not-utf8-endpoint", "POST", "{endpoint}?x=\xff\xfe", (400,)),
    ("query-raw-not-utf8-queue", "POST", "{queue}?x=\xff\xfe", (400,)),
    ("query-encoded-not-utf8-endpoint", "POST", "{endpoint}?x=%ff%fe", (200,)),
    ("query-encoded-not-utf8-alias", "POST", "{alias}?x=%ff%fe", (200,)),
    ("query-encoded-not-utf8-queue", "POST", "{queue}?x=%ff%fe", (200,)),
    ("traversal-dots-queue", "POST", "/taskqueue/../../etc/passwd", (404,)),
    ("traversal-dots-endpoint", "POST", "{alias}/../../../v2/task/cancel/", (404,)),
    ("traversal-dots-task-api", "GET", "/v2/task/../../../etc/passwd", (404,)),
    ("traversal-dots-output", "GET", "/output/id/../../../etc/passwd?expires=1&sig=x", (403, 404)),
]


@pytest.mark.parametrize(("method", "target", "allowed"), [pytest.param(*row[1:], id=row[0]) for row in RAW_TARGETS])
def test_raw_targets_never_answer_5xx(gateway, urls, early_task, method: str, target: str,
                                      allowed: tuple[int, ...]) -> None:
    """Raw non-ASCII bytes in the target are refused by the HTTP server itself; a percent-encoded non-UTF-8
    query is accepted (decoded with U+FFFD, as Beam's Go gateway does); a ``..`` name is a 4xx."""
    line = f"{method} {target.format(**urls)} HTTP/1.1".encode("latin-1")
    status, headers, body = _raw(gateway, line, b"{}" if method == "POST" else b"")
    assert status in allowed, (status, body[:300])
    if status >= 400 and body != SERVER_REFUSAL:
        _check_error(status, httpx.Headers(headers), body, allowed)


def test_enqueued_task_still_completes_and_deployments_still_answer(gateway, urls, early_task) -> None:
    task = wait_for_status(gateway, early_task, "COMPLETE")
    assert task["result"] == {"slept": 2}
    assert gateway.post(urls["endpoint"], json={"y": 2}).json() == {"keys": ["y"]}
    again = gateway.post(urls["queue"], json={"seconds": 0})
    assert again.status_code == 200
    assert wait_for_status(gateway, again.json()["task_id"], "COMPLETE")["result"] == {"slept": 0}
