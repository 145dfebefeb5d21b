"""beamray.serve_bridge.http_app under a real uvicorn server: real HTTP (httpx) and WebSockets (websockets).

Apps are mounted behind a small shim that does what Ray Serve's proxy does (``root_path`` set to the
route prefix, full path kept) or what prefix-stripping servers do, so both path styles are covered.
"""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import Body, FastAPI, Request, WebSocket
from fastapi.responses import JSONResponse
from starlette.responses import PlainTextResponse
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from beamray.context import FunctionContext
from beamray.serve_bridge.asgi import PayloadError, parse_payload
from beamray.serve_bridge.http_app import build_app

TOKEN = "secret-token"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Server:
    """uvicorn on 127.0.0.1:<free port> in a background thread."""

    def __init__(self, app: Any) -> None:
        self.port = _free_port()
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="critical", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def _mounted(app: Any, prefix: str, *, strip: bool = False, extensions: bool = True) -> Any:
    """Serve ``app`` under ``prefix`` like Ray Serve (full path + root_path) or a stripping server."""

    async def shim(scope, receive, send):
        if scope["type"] != "lifespan":
            scope = dict(scope)
            if not extensions:
                scope.pop("extensions", None)
            if prefix:
                path = scope["path"]
                assert path == prefix or path.startswith(prefix + "/"), path
                scope["root_path"] = prefix
                if strip:
                    scope["path"] = path[len(prefix) :] or "/"
        await app(scope, receive, send)

    return shim


@pytest.fixture
def serve():
    """``serve(app, prefix="", strip=False, extensions=True) -> base URL`` (HTTP) of a running server."""
    servers: list[_Server] = []

    def start(app: Any, prefix: str = "", *, strip: bool = False, extensions: bool = True) -> str:
        server = _Server(_mounted(app, prefix, strip=strip, extensions=extensions))
        servers.append(server)
        return f"http://127.0.0.1:{server.port}{prefix}"

    yield start
    for server in servers:
        server.stop()


def _context(task_id: str) -> FunctionContext:
    return FunctionContext(container_id="container-1", stub_id="stub-1", task_id=task_id, on_start_value=42)


def make(kind: str, handler: Any, **kwargs: Any):
    kwargs.setdefault("make_context", _context)
    kwargs.setdefault("authorize", None)
    return build_app(kind, handler, **kwargs)


def _check_token(header: str | None) -> bool:
    return header == f"Bearer {TOKEN}"


def _ws_url(base: str) -> str:
    return base.replace("http://", "ws://", 1)


# --------------------------------------------------------------------------------------------------
# parse_payload
# --------------------------------------------------------------------------------------------------


def test_parse_payload_uses_args_list_and_kwargs_object():
    assert parse_payload(b'{"args": [1, "a"], "kwargs": {"x": 2}}', []) == ([1, "a"], {"x": 2})


@pytest.mark.parametrize("body", [b"[" * 100_000 + b"]" * 100_000, b'{"a":' * 5000 + b"1" + b"}" * 5000,
                                  b'{"a": ' + b"[" * 2000 + b"]" * 2000 + b"}"], ids=["array", "object", "inside"])
def test_parse_payload_deeply_nested_json_is_a_payload_error_not_recursion(body):
    with pytest.raises(PayloadError, match="invalid request payload"):
        parse_payload(body, [])


def test_nesting_past_the_depth_limit_is_refused_whatever_the_recursion_limit():
    before = sys.getrecursionlimit()
    sys.setrecursionlimit(100_000)  # as some libraries do: json would then parse it
    try:
        with pytest.raises(PayloadError):
            parse_payload(b'{"a": ' + b"[" * 150 + b"]" * 150 + b"}", [])
    finally:
        sys.setrecursionlimit(before)
    assert parse_payload(b'{"a": ' + b"[" * 50 + b"]" * 50 + b"}", [])[1]["a"]


def test_a_lone_surrogate_in_a_result_is_sent_escaped_not_a_500():
    from beamray.serve_bridge.asgi import dumps

    assert json.loads(dumps({"echo": "a\ud800b", "ok": "é"})) == {"echo": "a\ud800b", "ok": "é"}
    assert dumps({"ok": "é"}) == '{"ok":"é"}'.encode()  # ordinary text stays UTF-8, unescaped


def test_deeply_nested_json_answers_400_from_the_endpoint(serve):
    base = serve(make("endpoint", _echo))
    response = httpx.post(base + "/", content=b'{"a":' * 5000 + b"1" + b"}" * 5000)
    assert response.status_code == 400 and response.json() == {"error": "invalid request payload"}


def test_parse_payload_whole_object_becomes_kwargs_when_no_kwargs_key():
    assert parse_payload(b'{"x": 1, "y": [1, 2]}', []) == ([], {"x": 1, "y": [1, 2]})
    # an args list is taken out, the rest of the object stays kwargs
    assert parse_payload(b'{"args": [1], "x": 2}', []) == ([1], {"x": 2})
    # "args" that is not a list and "kwargs" that is not an object are ordinary kwargs
    assert parse_payload(b'{"args": 5, "kwargs": "k"}', []) == ([], {"args": 5, "kwargs": "k"})
    # an explicit kwargs object wins; other keys are dropped as in Beam's gateway
    assert parse_payload(b'{"kwargs": {"a": 1}, "b": 2}', []) == ([], {"a": 1})


def test_parse_payload_merges_query_numbers_as_floats_and_repeats_as_lists():
    query = [("n", "3"), ("f", "2.5"), ("s", "abc"), ("r", "1"), ("r", "2"), ("m", "1"), ("m", "x"), ("e", "")]
    args, kwargs = parse_payload(b'{"n": "body", "keep": true}', query)
    assert args == []
    assert kwargs == {
        "n": 3.0,
        "f": 2.5,
        "s": "abc",
        "r": [1.0, 2.0],
        "m": ["1", "x"],
        "e": "",
        "keep": True,
    }
    assert type(kwargs["n"]) is float
    # Go's ParseFloat refuses these, so they stay strings
    _, odd = parse_payload(b"", [("u", "1_000"), ("w", " 1"), ("big", "1e400"), ("inf", "inf")])
    assert odd["u"] == "1_000" and odd["w"] == " 1" and odd["big"] == "1e400"
    assert odd["inf"] == float("inf")


def test_parse_payload_empty_whitespace_and_null_bodies_give_no_arguments():
    assert parse_payload(b"", []) == ([], {})
    assert parse_payload(b"  \n", []) == ([], {})
    assert parse_payload(b"null", []) == ([], {})
    assert parse_payload(b"{}", [("a", "1")]) == ([], {"a": 1.0})


@pytest.mark.parametrize("body", [b"{", b"not json", b"[1, 2]", b"3", b'"text"', b"\xff\xfe"])
def test_parse_payload_rejects_invalid_json_and_non_objects(body):
    with pytest.raises(PayloadError, match="invalid request payload"):
        parse_payload(body, [])
    assert issubclass(PayloadError, ValueError)


# --------------------------------------------------------------------------------------------------
# endpoint: request shapes
# --------------------------------------------------------------------------------------------------


def _echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


def test_endpoint_calls_handler_with_args_and_kwargs_from_body(serve):
    base = serve(make("endpoint", _echo))
    response = httpx.post(base + "/", json={"args": [1, 2], "kwargs": {"x": "y"}})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"args": [1, 2], "kwargs": {"x": "y"}}


def test_endpoint_whole_json_object_becomes_kwargs(serve):
    base = serve(make("endpoint", _echo))
    assert httpx.post(base + "/", json={"x": 1, "y": "z"}).json() == {"args": [], "kwargs": {"x": 1, "y": "z"}}


def test_endpoint_merges_query_params_as_floats_and_repeated_as_list(serve):
    base = serve(make("endpoint", _echo))
    got = httpx.get(base + "/?a=1&b=two&c=1&c=2.5&d=x&d=y").json()
    assert got == {"args": [], "kwargs": {"a": 1.0, "b": "two", "c": [1.0, 2.5], "d": ["x", "y"]}}
    posted = httpx.post(base + "/?n=7", json={"kwargs": {"m": 1}}).json()
    assert posted == {"args": [], "kwargs": {"m": 1, "n": 7.0}}


def test_endpoint_empty_body_calls_handler_without_arguments(serve):
    base = serve(make("endpoint", lambda: {"called": True}))
    assert httpx.post(base + "/").json() == {"called": True}
    assert httpx.get(base + "/").json() == {"called": True}


def test_endpoint_invalid_json_is_400_without_calling_handler(serve):
    calls = []
    base = serve(make("endpoint", lambda **kw: calls.append(kw)))
    response = httpx.post(base + "/", content=b"{not json")
    assert response.status_code == 400
    assert response.json() == {"error": "invalid request payload"}
    assert calls == []


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b"42", b'"a string"'])
def test_endpoint_non_object_json_is_400(serve, body):
    base = serve(make("endpoint", _echo))
    response = httpx.post(base + "/", content=body)
    assert response.status_code == 400
    assert response.json() == {"error": "invalid request payload"}


def test_endpoint_body_over_limit_by_content_length_is_413_without_calling_handler(serve):
    calls = []
    base = serve(make("endpoint", lambda **kw: calls.append(kw), max_body_bytes=1000))
    ok = httpx.post(base + "/", json={"x": "a" * 900})
    assert ok.status_code == 200
    response = httpx.post(base + "/", content=b'{"x": "' + b"a" * 2000 + b'"}')
    assert response.status_code == 413
    assert response.json() == {"error": "payload too large"}
    assert len(calls) == 1


def test_endpoint_chunked_body_over_limit_is_413(serve):
    calls = []
    base = serve(make("endpoint", lambda **kw: calls.append(kw), max_body_bytes=1000))
    chunks = iter([b'{"x": "', b"a" * 600, b"a" * 600, b'"}'])
    response = httpx.post(base + "/", content=chunks)  # no Content-Length: chunked transfer encoding
    assert response.request.headers.get("transfer-encoding") == "chunked"
    assert response.status_code == 413
    assert response.json() == {"error": "payload too large"}
    assert calls == []


def test_endpoint_default_limit_is_16_mib_and_checked_from_content_length_before_reading(serve):
    base = serve(make("endpoint", _echo))
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        request = (
            f"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {16 * 2**20 + 1}\r\n\r\n{{"
        )
        sock.sendall(request.encode())  # the body is never sent: the answer must not wait for it
        reply = sock.recv(65536).decode()
    assert reply.startswith("HTTP/1.1 413"), reply
    assert '{"error":"payload too large"}' in reply


# --------------------------------------------------------------------------------------------------
# auth, warmup, health, routing
# --------------------------------------------------------------------------------------------------


def test_authorized_endpoint_needs_valid_bearer_token(serve):
    seen = []

    def authorize(header):
        seen.append(header)
        return _check_token(header)

    base = serve(make("endpoint", lambda: "ok", authorize=authorize))
    missing = httpx.post(base + "/")
    wrong = httpx.post(base + "/", headers={"Authorization": "Bearer nope"})
    good = httpx.post(base + "/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert missing.status_code == 401 and missing.json() == {"error": "Unauthorized"}
    assert wrong.status_code == 401
    assert good.status_code == 200 and good.json() == "ok"
    assert seen == [None, "Bearer nope", f"Bearer {TOKEN}"]
    # auth comes before routing: unknown paths and warmup are refused too
    assert httpx.get(base + "/nowhere").status_code == 401
    assert httpx.post(base + "/warmup").status_code == 401


def test_public_endpoint_ignores_authorization(serve):
    base = serve(make("endpoint", lambda: "ok", authorize=None))
    assert httpx.post(base + "/").json() == "ok"
    assert httpx.post(base + "/", headers={"Authorization": "Bearer anything"}).json() == "ok"


def test_health_answers_ok_without_auth(serve):
    base = serve(make("endpoint", lambda: "ok", authorize=_check_token))
    response = httpx.get(base + "/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_warmup_returns_200_empty_without_calling_handler(serve):
    calls = []
    base = serve(make("endpoint", lambda: calls.append(1), authorize=_check_token))
    response = httpx.post(base + "/warmup", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    assert response.content == b""
    assert calls == []


def test_unknown_path_is_404_and_wrong_method_is_405(serve):
    base = serve(make("endpoint", lambda: "ok"))
    missing = httpx.get(base + "/nope")
    assert missing.status_code == 404 and missing.json() == {"error": "not found"}
    for method in ("PUT", "DELETE", "PATCH"):
        response = httpx.request(method, base + "/")
        assert response.status_code == 405, method
        assert set(response.headers["allow"].split(", ")) == {"GET", "POST"}
    assert httpx.get(base + "/warmup").status_code == 405
    assert httpx.post(base + "/health").status_code == 405


@pytest.mark.parametrize("strip", [False, True], ids=["serve-full-path", "stripped-path"])
def test_endpoint_routes_match_relative_to_root_path(serve, strip):
    base = serve(make("endpoint", _echo), "/endpoint/my-app/v1", strip=strip)
    assert httpx.post(base + "/", json={"x": 1}).json() == {"args": [], "kwargs": {"x": 1}}
    assert httpx.post(base, json={"x": 2}).json() == {"args": [], "kwargs": {"x": 2}}
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    assert httpx.post(base + "/warmup").status_code == 200
    assert httpx.get(base + "/other").status_code == 404


# --------------------------------------------------------------------------------------------------
# endpoint: calling the handler
# --------------------------------------------------------------------------------------------------


def test_context_is_passed_only_to_handlers_with_a_context_parameter(serve):
    def with_context(x, context):
        return {"x": x, "task_id": context.task_id, "on_start": context.on_start_value, "cid": context.container_id}

    def without_context(**kwargs):
        return sorted(kwargs)

    with_base = serve(make("endpoint", with_context))
    got = httpx.post(with_base + "/", json={"x": 1})
    assert got.json() == {"x": 1, "task_id": got.headers["x-task-id"], "on_start": 42, "cid": "container-1"}

    without_base = serve(make("endpoint", without_context))
    assert httpx.post(without_base + "/", json={"y": 2}).json() == ["y"]


def test_task_id_is_a_new_uuid_when_header_missing_and_echoed(serve):
    base = serve(make("endpoint", lambda context: context.task_id))
    first = httpx.post(base + "/")
    second = httpx.post(base + "/")
    assert first.json() == first.headers["x-task-id"]
    assert len(first.json()) == 36 and first.json() != second.json()


def test_endpoint_never_takes_the_task_id_the_client_sent(serve):
    base = serve(make("endpoint", lambda context: context.task_id))
    chosen = httpx.post(base + "/", headers={"X-Task-Id": "someone-elses-task"})
    assert chosen.json() != "someone-elses-task" and len(chosen.json()) == 36
    assert chosen.headers["x-task-id"] == chosen.json()


def test_asgi_app_sees_a_fresh_task_id_not_the_clients(serve):
    app = FastAPI()

    @app.get("/seen")
    def seen(request: Request):
        return request.headers.getlist("x-task-id")

    base = serve(make("asgi", app))
    response = httpx.get(base + "/seen", headers={"X-Task-Id": "someone-elses-task"})
    assert response.json() == [response.headers["x-task-id"]]
    assert response.headers["x-task-id"] != "someone-elses-task"


def test_async_handler_is_awaited(serve):
    async def handler(x: int, context):
        await asyncio.sleep(0.01)
        return {"double": x * 2, "task": context.task_id}

    base = serve(make("endpoint", handler))
    response = httpx.post(base + "/", json={"x": 21})
    assert response.json() == {"double": 42, "task": response.headers["x-task-id"]}


def test_non_json_values_are_sent_with_str_fallback(serve):
    import datetime

    base = serve(make("endpoint", lambda: {"when": datetime.date(2024, 1, 2), "none": None}))
    assert httpx.post(base + "/").json() == {"when": "2024-01-02", "none": None}
    none_base = serve(make("endpoint", lambda: None))
    assert httpx.post(none_base + "/").content == b"null"


def test_starlette_response_is_passed_through_unchanged(serve):
    def handler():
        return PlainTextResponse("plain body", status_code=201, headers={"x-custom": "yes"})

    base = serve(make("endpoint", handler))
    response = httpx.post(base + "/")
    assert response.status_code == 201
    assert response.text == "plain body"
    assert response.headers["x-custom"] == "yes"
    assert response.headers["content-type"].startswith("text/plain")


def test_sync_generator_streams_data_events_exactly(serve):
    def handler(n: int):
        for i in range(int(n)):
            yield {"i": i} if i % 2 == 0 else f"item-{i}"

    base = serve(make("endpoint", handler))
    with httpx.stream("POST", base + "/", json={"n": 4}) as response:
        body = response.read()
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain")
        assert len(response.headers["x-task-id"]) == 36
    assert body == (
        b'data: {"i": 0}\n\n' b'data: {"data": "item-1"}\n\n' b'data: {"i": 2}\n\n' b'data: {"data": "item-3"}\n\n'
    )


def test_async_generator_streams_data_events_exactly(serve):
    async def handler():
        for item in ({"a": 1}, [1, 2], 3, None):
            await asyncio.sleep(0)
            yield item

    base = serve(make("endpoint", handler))
    body = httpx.post(base + "/").content
    assert body == b'data: {"a": 1}\n\ndata: {"data": [1, 2]}\n\ndata: {"data": 3}\n\ndata: {"data": null}\n\n'


def test_stream_items_arrive_as_they_are_produced(serve):
    gate = threading.Event()

    def handler():
        yield "first"
        yield f"second {gate.wait(5)}"  # False if the first item was held back until the end

    base = serve(make("endpoint", handler))
    with httpx.stream("POST", base + "/") as response:
        chunks = response.iter_raw()
        first = next(chunks)
        gate.set()
        rest = b"".join(chunks)
    assert first == b'data: {"data": "first"}\n\n'
    assert rest == b'data: {"data": "second True"}\n\n'


def test_client_leaving_mid_stream_stops_and_closes_the_generator(serve):
    closed = threading.Event()

    def handler():
        try:
            while True:
                yield "tick"
                time.sleep(0.02)
        finally:
            closed.set()

    base = serve(make("endpoint", handler))
    with httpx.stream("POST", base + "/") as response:
        assert next(response.iter_raw()) == b'data: {"data": "tick"}\n\n'
    assert closed.wait(5)


def test_failure_mid_stream_aborts_the_response(serve):
    def handler():
        yield "one"
        raise ValueError("mid-stream")

    base = serve(make("endpoint", handler))
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(base + "/")


@pytest.mark.parametrize("asynchronous", [False, True], ids=["sync", "async"])
def test_timeout_mid_stream_aborts_the_response(serve, asynchronous):
    def sync_handler():
        yield "one"
        time.sleep(3)
        yield "two"

    async def async_handler():
        yield "one"
        await asyncio.sleep(3)
        yield "two"

    base = serve(make("endpoint", async_handler if asynchronous else sync_handler, timeout=0.5))
    started = time.monotonic()
    with pytest.raises(httpx.RemoteProtocolError):
        httpx.post(base + "/")
    assert time.monotonic() - started < 2.5


def test_handler_exception_is_500_with_traceback(serve):
    def handler():
        raise ValueError("boom from handler")

    base = serve(make("endpoint", handler))
    response = httpx.post(base + "/")
    assert response.status_code == 500
    error = response.json()["error"]
    assert error.startswith("Traceback (most recent call last):")
    assert "ValueError: boom from handler" in error
    assert "in handler" in error
    assert len(response.headers["x-task-id"]) == 36


def test_timeout_error_raised_by_handler_is_500_not_504(serve):
    async def handler():
        raise TimeoutError("user code timed out")

    base = serve(make("endpoint", handler, timeout=5))
    response = httpx.post(base + "/")
    assert response.status_code == 500
    assert "TimeoutError: user code timed out" in response.json()["error"]


def test_async_handler_timeout_is_504_and_cancels_it(serve):
    cancelled = threading.Event()

    async def handler():
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    base = serve(make("endpoint", handler, timeout=0.3))
    started = time.monotonic()
    response = httpx.post(base + "/")
    assert response.status_code == 504
    assert response.json() == {"error": "Task timed out after 0.3s"}
    assert time.monotonic() - started < 2
    assert cancelled.wait(2)


def test_sync_handler_timeout_is_504_and_thread_finishes_in_background_holding_its_slot(serve):
    finished = threading.Event()

    def handler(delay: float = 0):
        time.sleep(delay)
        if delay:
            finished.set()
        return "done"

    base = serve(make("endpoint", handler, timeout=1.0, concurrency=1))
    client = httpx.Client(timeout=10)
    started = time.monotonic()
    response = client.post(base + "/", json={"delay": 1.5})
    assert response.status_code == 504
    assert response.json() == {"error": "Task timed out after 1s"}
    assert time.monotonic() - started < 1.4
    assert not finished.is_set()
    # the next call queues until the abandoned thread gives its slot back, then runs normally
    follow = client.post(base + "/", json={"delay": 0})
    client.close()
    assert finished.is_set()
    assert follow.status_code == 200 and follow.json() == "done"


def test_requests_waiting_past_the_timeout_in_the_queue_get_504(serve):
    def handler(delay: float):
        time.sleep(delay)
        return "ok"

    base = serve(make("endpoint", handler, timeout=1.0, concurrency=1))
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(httpx.post, base + "/", json={"delay": 0.6})
        time.sleep(0.1)
        queued = pool.submit(httpx.post, base + "/", json={"delay": 1.0})
        assert slow.result().status_code == 200
        assert queued.result().status_code == 504


def _timed_pair(base: str, delay: float) -> float:
    """Wall time of two concurrent calls that each sleep ``delay`` (clients made before the clock starts)."""
    clients = [httpx.Client(base_url=base, timeout=20) for _ in range(2)]
    try:
        for client in clients:
            client.post("/", json={"delay": 0})  # connect and warm the handler pool
        started = time.monotonic()
        with ThreadPoolExecutor(2) as pool:
            results = list(pool.map(lambda c: c.post("/", json={"delay": delay}), clients))
        elapsed = time.monotonic() - started
    finally:
        for client in clients:
            client.close()
    assert all(r.status_code == 200 for r in results)
    return elapsed


def _sleeper(delay: float):
    time.sleep(delay)
    return "slept"


def test_concurrency_one_serialises_handler_calls(serve):
    base = serve(make("endpoint", _sleeper, concurrency=1))
    assert _timed_pair(base, 0.5) >= 1.0


def test_concurrency_two_runs_handler_calls_in_parallel(serve):
    base = serve(make("endpoint", _sleeper, concurrency=2))
    assert _timed_pair(base, 0.6) < 1.1


def test_requests_beyond_concurrency_queue_in_the_replica_and_all_succeed(serve):
    active = []
    peak = []
    lock = threading.Lock()

    def handler(i):
        with lock:
            active.append(i)
            peak.append(len(active))
        time.sleep(0.05)
        with lock:
            active.remove(i)
        return i

    base = serve(make("endpoint", handler, concurrency=3))
    with ThreadPoolExecutor(24) as pool:
        results = list(pool.map(lambda i: httpx.post(base + "/", json={"i": i}, timeout=20), range(24)))
    assert [r.json() for r in results] == list(range(24))
    assert max(peak) <= 3


def test_build_app_rejects_unknown_kind_and_bad_concurrency():
    with pytest.raises(ValueError):
        make("taskqueue-submit", _echo)
    with pytest.raises(ValueError):
        make("endpoint", _echo, concurrency=0)


# --------------------------------------------------------------------------------------------------
# asgi
# --------------------------------------------------------------------------------------------------


def _fastapi_app(events: list[str] | None = None):
    @asynccontextmanager
    async def lifespan(app):
        if events is not None:
            events.append("startup")
        yield
        if events is not None:
            events.append("shutdown")

    app = FastAPI(lifespan=lifespan)
    items: dict[int, Any] = {}

    @app.get("/")
    def root(request: Request):
        return {"root": True, "root_path": request.scope.get("root_path")}

    @app.get("/items/{item_id}")
    def get_item(item_id: int, request: Request):
        return {"id": item_id, "value": items.get(item_id), "url": str(request.url_for("get_item", item_id=item_id))}

    @app.post("/items/{item_id}")
    async def create_item(item_id: int, value: Any = Body(embed=True)):
        items[item_id] = value
        return {"created": item_id}

    @app.put("/items/{item_id}")
    def replace_item(item_id: int, value: Any = Body(embed=True)):
        items[item_id] = value
        return {"replaced": item_id}

    @app.delete("/items/{item_id}")
    def delete_item(item_id: int):
        return {"deleted": items.pop(item_id, None)}

    @app.get("/nested/deeper/path")
    def nested(q: str = "none"):
        return {"nested": q}

    @app.post("/upload")
    async def upload(request: Request):
        return {"size": len(await request.body())}

    @app.websocket("/ws")
    async def ws(websocket: WebSocket):
        await websocket.accept()
        text = await websocket.receive_text()
        await websocket.send_text(f"app got {text}")
        await websocket.close()

    return app


@pytest.mark.parametrize("strip", [False, True], ids=["serve-full-path", "stripped-path"])
def test_asgi_fastapi_app_serves_routes_methods_and_path_params_under_root_path(serve, strip):
    prefix = "/asgi/my-api/v2"
    base = serve(make("asgi", _fastapi_app()), prefix, strip=strip)
    with httpx.Client(base_url=base) as client:
        assert client.get("/").json() == {"root": True, "root_path": prefix}
        assert client.post("/items/7", json={"value": "seven"}).json() == {"created": 7}
        got = client.get("/items/7")
        assert got.json() == {"id": 7, "value": "seven", "url": f"{base}/items/7"}
        assert "x-task-id" in got.headers
        assert client.put("/items/7", json={"value": 77}).json() == {"replaced": 7}
        assert client.get("/items/7").json()["value"] == 77
        assert client.delete("/items/7").json() == {"deleted": 77}
        assert client.get("/nested/deeper/path?q=hi").json() == {"nested": "hi"}
        assert client.get("/items/not-an-int").status_code == 422
        assert client.patch("/items/7").status_code == 405
        assert client.get("/missing").status_code == 404
    assert httpx.get(base).json()["root"] is True  # the bare mount point reaches "/"


@pytest.mark.parametrize(
    "bad",
    [lambda scope: None, object(), type("App", (), {}), {"not": "an app"}],
    ids=["sync-function", "object", "class", "dict"],
)
def test_asgi_rejects_non_asgi3_handler_result(bad):
    with pytest.raises(TypeError, match="Invalid ASGI app returned from handler"):
        make("asgi", bad)


def test_asgi_applies_auth_and_intercepts_warmup(serve):
    base = serve(make("asgi", _fastapi_app(), authorize=_check_token))
    assert httpx.get(base + "/items/1").status_code == 401
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(base + "/items/1", headers=auth).json()["id"] == 1
    warm = httpx.post(base + "/warmup", headers=auth)
    assert warm.status_code == 200 and warm.content == b""


def test_asgi_health_answers_ok_unless_the_app_defines_its_own(serve):
    plain = serve(make("asgi", _fastapi_app(), authorize=_check_token))
    response = httpx.get(plain + "/health")
    assert response.status_code == 200 and response.json() == {"status": "ok"}

    own = FastAPI()

    @own.get("/health")
    def health():
        return JSONResponse({"model": "loading"}, status_code=503)

    custom = serve(make("asgi", own, authorize=_check_token))
    response = httpx.get(custom + "/health", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 503 and response.json() == {"model": "loading"}
    public = serve(make("asgi", own, authorize=None))
    assert httpx.get(public + "/health").json() == {"model": "loading"}


def test_asgi_apps_own_health_is_not_shown_to_callers_without_auth(serve):
    calls = []
    own = FastAPI()

    @own.get("/health")
    def health():
        calls.append(1)
        return {"secret": "internal state"}

    base = serve(make("asgi", own, authorize=_check_token))
    for headers in ({}, {"Authorization": "Bearer nope"}):
        response = httpx.get(base + "/health", headers=headers)
        assert response.status_code == 200 and response.json() == {"status": "ok"}  # the replica's own health
    assert calls == []


def test_asgi_body_over_limit_is_413_by_content_length_and_while_streaming(serve):
    base = serve(make("asgi", _fastapi_app(), max_body_bytes=1000))
    assert httpx.post(base + "/upload", content=b"a" * 900).json() == {"size": 900}
    declared = httpx.post(base + "/upload", content=b"a" * 2000)
    assert declared.status_code == 413 and declared.json() == {"error": "payload too large"}
    chunked = httpx.post(base + "/upload", content=iter([b"a" * 600, b"a" * 600]))
    assert chunked.status_code == 413 and chunked.json() == {"error": "payload too large"}


def test_asgi_request_that_does_not_start_responding_in_time_is_504(serve):
    app = FastAPI()

    @app.get("/slow")
    async def slow():
        await asyncio.sleep(5)

    @app.get("/fast")
    async def fast():
        return "fast"

    base = serve(make("asgi", app, timeout=0.3))
    response = httpx.get(base + "/slow")
    assert response.status_code == 504
    assert response.json() == {"error": "Task timed out after 0.3s"}
    assert httpx.get(base + "/fast").json() == "fast"


def test_asgi_forwards_websockets_and_lifespan_to_the_app(serve):
    events: list[str] = []
    base = serve(make("asgi", _fastapi_app(events)), "/asgi/ws-app")
    assert events == ["startup"]
    with connect(_ws_url(base) + "/ws") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "app got hello"


# --------------------------------------------------------------------------------------------------
# realtime
# --------------------------------------------------------------------------------------------------


def _realtime_echo(event):
    if isinstance(event, bytes):
        return event[::-1]
    if event == "as-json":
        return {"response": event}
    if event == "as-list":
        return [1, "two"]
    return event


def test_realtime_echoes_text_json_and_bytes(serve):
    base = serve(make("realtime", _realtime_echo), "/realtime/echo")
    with connect(_ws_url(base) + "/") as ws:
        ws.send("hello")
        assert ws.recv(timeout=5) == "hello"
        ws.send('{"event": "Echo this back"}')  # text stays a str, as in Beam
        assert ws.recv(timeout=5) == '{"event": "Echo this back"}'
        ws.send("as-json")
        assert json.loads(ws.recv(timeout=5)) == {"response": "as-json"}
        ws.send("as-list")
        assert json.loads(ws.recv(timeout=5)) == [1, "two"]
        ws.send(b"\x01\x02\x03")
        assert ws.recv(timeout=5) == b"\x03\x02\x01"


def test_realtime_dict_result_is_a_json_text_frame(serve):
    base = serve(make("realtime", lambda event: {"response": event}))
    with connect(_ws_url(base)) as ws:
        ws.send("Hello Server!")
        frame = ws.recv(timeout=5)
        assert isinstance(frame, str)
        assert json.loads(frame) == {"response": "Hello Server!"}


def test_realtime_generator_streams_each_item_as_a_message(serve):
    def handler(event):
        for word in event.split():
            yield word
        yield {"done": True}

    async def async_handler(event):
        for i in range(3):
            yield {"i": i, "event": event}

    base = serve(make("realtime", handler))
    with connect(_ws_url(base)) as ws:
        ws.send("this could be anything")
        assert [ws.recv(timeout=5) for _ in range(5)] == ["this", "could", "be", "anything", '{"done":true}']
    abase = serve(make("realtime", async_handler))
    with connect(_ws_url(abase)) as ws:
        ws.send("e")
        assert [json.loads(ws.recv(timeout=5)) for _ in range(3)] == [{"i": i, "event": "e"} for i in range(3)]


def test_realtime_exception_sends_error_frame_and_keeps_socket_open(serve):
    def handler(event):
        if event == "fail":
            raise RuntimeError("realtime boom")
        return f"ok {event}"

    base = serve(make("realtime", handler))
    with connect(_ws_url(base)) as ws:
        ws.send("fail")
        error = json.loads(ws.recv(timeout=5))["error"]
        assert "RuntimeError: realtime boom" in error and error.startswith("Traceback")
        ws.send("again")
        assert ws.recv(timeout=5) == "ok again"


def test_realtime_passes_context_by_name_and_awaits_async_handlers(serve):
    async def handler(context, event):
        await asyncio.sleep(0)
        return {"task_id": context.task_id, "event": event, "on_start": context.on_start_value}

    base = serve(make("realtime", handler))
    with connect(_ws_url(base), additional_headers={"X-TASK-ID": "ws-task"}) as ws:
        ws.send("x")
        got = json.loads(ws.recv(timeout=5))
    assert got == {"task_id": got["task_id"], "event": "x", "on_start": 42}
    assert got["task_id"] != "ws-task" and len(got["task_id"]) == 36  # never the id the client sent


def test_realtime_handler_timeout_sends_error_frame_and_keeps_socket_open(serve):
    async def handler(event):
        if event == "slow":
            await asyncio.sleep(5)
        return event

    base = serve(make("realtime", handler, timeout=0.3))
    with connect(_ws_url(base)) as ws:
        ws.send("slow")
        assert json.loads(ws.recv(timeout=5)) == {"error": "Task timed out after 0.3s"}
        ws.send("fast")
        assert ws.recv(timeout=5) == "fast"


def test_realtime_unauthorized_handshake_is_refused_with_http_401(serve):
    base = serve(make("realtime", _realtime_echo, authorize=_check_token))
    with pytest.raises(InvalidStatus) as refused:
        with connect(_ws_url(base)):
            pass
    assert refused.value.response.status_code == 401
    assert json.loads(refused.value.response.body) == {"error": "Unauthorized"}
    with connect(_ws_url(base), additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send("hi")
        assert ws.recv(timeout=5) == "hi"


def test_realtime_unauthorized_without_http_response_extension_closes_with_4401(serve):
    base = serve(make("realtime", _realtime_echo, authorize=_check_token), extensions=False)
    with connect(_ws_url(base)) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
    assert closed.value.rcvd.code == 4401
    assert closed.value.rcvd.reason == "Unauthorized"


def test_realtime_http_routes_warmup_health_and_websocket_only_root(serve):
    calls = []
    base = serve(make("realtime", lambda event: calls.append(event), authorize=_check_token))
    auth = {"Authorization": f"Bearer {TOKEN}"}
    assert httpx.get(base + "/health").json() == {"status": "ok"}
    warm = httpx.post(base + "/warmup", headers=auth)
    assert warm.status_code == 200 and warm.content == b""
    assert httpx.get(base + "/", headers=auth).status_code == 426
    assert httpx.get(base + "/nope", headers=auth).status_code == 404
    assert calls == []


def test_realtime_unknown_websocket_path_is_refused_with_404(serve):
    base = serve(make("realtime", _realtime_echo))
    with pytest.raises(InvalidStatus) as refused:
        with connect(_ws_url(base) + "/elsewhere"):
            pass
    assert refused.value.response.status_code == 404


def test_realtime_none_result_sends_nothing(serve):
    base = serve(make("realtime", lambda event: None if event == "quiet" else event))
    with connect(_ws_url(base)) as ws:
        ws.send("quiet")
        ws.send("loud")
        assert ws.recv(timeout=5) == "loud"


def test_endpoint_rejects_websocket_connections(serve):
    base = serve(make("endpoint", _echo))
    with pytest.raises(InvalidStatus) as refused:
        with connect(_ws_url(base)):
            pass
    assert refused.value.response.status_code == 404



# --------------------------------------------------------------------------------------------------
# version_mount: the latest version answers at the alias prefix too
# --------------------------------------------------------------------------------------------------


def test_a_version_at_the_alias_prefix_answers_its_own_version_and_latest_and_404s_another(serve):
    from beamray.serve_bridge.web_app import version_mount

    api = FastAPI()

    @api.get("/where")
    async def where(request: Request):
        return {"root": request.scope["root_path"], "path": request.url.path}

    @api.websocket("/ws")
    async def echo(socket: WebSocket):
        await socket.accept()
        await socket.send_text(await socket.receive_text())

    app = version_mount(make("asgi", api), 3)
    alias = serve(app, "/asgi/api")
    for segment, root in (("", "/asgi/api"), ("/v3", "/asgi/api/v3"), ("/latest", "/asgi/api/latest")):
        response = httpx.get(f"{alias}{segment}/where")
        assert (response.status_code, response.json()["root"]) == (200, root), segment
        with connect(f"{_ws_url(alias)}{segment}/ws") as socket:
            socket.send("hi")
            assert socket.recv(timeout=10) == "hi"
    response = httpx.get(f"{alias}/v4/where")  # a version that does not run
    assert (response.status_code, response.json()) == (404, {"error": "not found"})
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{_ws_url(alias)}/v4/ws")
    assert refused.value.response.status_code == 404
    own = serve(app, "/asgi/api/v3")  # at its own prefix: a further /v4 is the app's own path
    assert httpx.get(f"{own}/where").json()["root"] == "/asgi/api/v3"
    assert httpx.get(f"{own}/v4/where").status_code == 404  # FastAPI's own 404
