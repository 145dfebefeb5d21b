"""Web deployments on the real session cluster: Ray Serve, real HTTP and WebSocket clients."""

from __future__ import annotations

import concurrent.futures
import json
import time
from pathlib import Path

import httpx
import pytest
from websockets.sync.client import connect as ws_connect

from beamray import config
from beamray import deploy as orchestrator
from beamray.exceptions import DeployError
from tests.apps import web_app

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def base(client: httpx.Client) -> str:
    return str(client.base_url).rstrip("/")


def deploy(handle, name=None):
    return orchestrator.deploy(handle.parent.spec_for(handle.func, name), code_root=REPO)


@pytest.fixture(scope="module")
def multiply_v1(gateway):
    return deploy(web_app.multiply)


def test_deployed_endpoint_answers_on_its_versioned_url(gateway, multiply_v1):
    assert multiply_v1.url.endswith("/endpoint/multiply/v1")
    response = gateway.post("/endpoint/multiply/v1", json={"x": 10})
    assert response.status_code == 200 and response.json() == {"result": 20}


def test_alias_urls_reach_the_latest_version(gateway, multiply_v1):
    for path in ("/endpoint/multiply", "/endpoint/multiply/latest", f"/endpoint/id/{multiply_v1.stub_id}"):
        assert gateway.post(path, json={"x": 4}).json() == {"result": 8}, path


def test_body_args_kwargs_and_query_params(gateway, multiply_v1):
    assert gateway.post("/endpoint/multiply/v1", json={"kwargs": {"x": 3}}).json() == {"result": 6}
    assert gateway.post("/endpoint/multiply/v1?x=2.5").json() == {"result": 5.0}


def test_auth_missing_wrong_and_right_token(gateway, multiply_v1):
    url = f"{base(gateway)}/endpoint/multiply/v1"
    assert httpx.post(url, json={"x": 1}).status_code == 401
    assert httpx.post(url, json={"x": 1}, headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.post(f"{base(gateway)}/endpoint/multiply", json={"x": 1}).status_code == 401
    assert gateway.post("/endpoint/multiply/v1", json={"x": 1}).status_code == 200


def test_bad_payloads_get_clear_errors(gateway, multiply_v1):
    bad = gateway.post("/endpoint/multiply/v1", content=b'{"x": 1', headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json() == {"error": "invalid request payload"}
    huge = gateway.post("/endpoint/multiply/v1", content=b"x" * (16 * 2**20 + 1))
    assert huge.status_code == 413
    assert gateway.post("/endpoint/no-such-app", json={}).status_code == 404
    assert gateway.post("/nowhere").status_code == 404


def test_handler_exception_is_a_500_with_the_traceback(gateway, multiply_v1):
    response = gateway.post("/endpoint/multiply/v1", json={"y": 1})
    assert response.status_code == 500 and "KeyError" in response.json()["error"]


def test_warmup_answers_200(gateway, multiply_v1):
    assert gateway.post("/endpoint/multiply/v1/warmup").status_code == 200
    assert gateway.post("/endpoint/multiply/warmup").status_code == 200


def test_redeploy_creates_a_new_version_and_moves_latest(gateway, multiply_v1):
    v2 = deploy(web_app.multiply)
    assert v2.version == multiply_v1.version + 1
    ids = {gateway.post(path, json={"x": 1}).headers.get("x-beamray-version") for path in ("/endpoint/multiply",)}
    assert gateway.post(f"/endpoint/multiply/v{v2.version}", json={"x": 1}).json() == {"result": 2}
    assert gateway.post("/endpoint/multiply/v1", json={"x": 1}).json() == {"result": 2}  # v1 still serves
    latest = [r for r in orchestrator.list_deployments() if r.name == "multiply" and r.status == "running"][-1]
    assert latest.version == v2.version and ids
    stopped = orchestrator.stop(f"multiply:v{v2.version}")
    assert [r.status for r in stopped] == ["stopped"]
    assert gateway.post(f"/endpoint/multiply/v{v2.version}", json={"x": 1}).status_code == 404
    assert gateway.post("/endpoint/multiply", json={"x": 5}).json() == {"result": 10}  # back to v1


def test_on_start_value_and_context_reach_the_handler(gateway):
    deploy(web_app.with_context)
    response = gateway.post("/endpoint/ctx/v1", json={"x": 7}, headers={"X-TASK-ID": "task-123"})
    body = response.json()
    assert body["x"] == 7 and body["on_start"] == "loaded"
    assert body["task_id"] == response.headers["x-task-id"] != "task-123"  # a client cannot choose its id
    assert body["container"].startswith("endpoint-")


def test_failing_on_start_fails_the_deploy_with_the_traceback(gateway):
    with pytest.raises(DeployError, match="on_start exploded"):
        deploy(web_app.bad_start)


def test_async_handler(gateway):
    deploy(web_app.async_handler)
    assert gateway.post("/endpoint/asyncep/v1", json={"delay": 0.01}).json() == {"async": True}


def test_generator_streams_beam_framing(gateway):
    deploy(web_app.streamer)
    with gateway.stream("POST", "/endpoint/stream/v1", json={"n": 3}) as response:
        text = "".join(response.iter_text())
    assert text == "".join(f"data: {json.dumps({'i': i})}\n\n" for i in range(3))


def test_public_deployment_needs_no_token(gateway):
    record = deploy(web_app.public_handler)
    assert "/endpoint/public/" in record.url
    assert httpx.post(record.url).json() == {"public": True}
    assert httpx.post(f"{base(gateway)}/endpoint/public/v1").json() == {"public": True}


def test_asgi_app_serves_several_routes_and_methods(gateway):
    deploy(web_app.web_server)
    prefix = "/asgi/webapp/v1"
    assert gateway.put(f"{prefix}/items/a", json={"value": 42}).json() == {"stored": "a"}
    assert gateway.get(f"{prefix}/items/a").json() == {"id": "a", "value": 42}
    assert gateway.post(f"{prefix}/echo", json={"k": [1, 2]}).json() == {"k": [1, 2]}
    assert gateway.delete(f"{prefix}/items/a").json() == {"deleted": True}
    assert gateway.get("/asgi/webapp/items/a").json() == {"id": "a", "value": None}  # via the alias
    assert httpx.get(f"{base(gateway)}/asgi/webapp/v1/items/a").status_code == 401


def test_realtime_echo_over_a_real_websocket(gateway):
    deploy(web_app.echo)
    url = f"ws://127.0.0.1:{config.http_port()}/realtime/echo/v1"
    with ws_connect(url) as socket:
        socket.send("hello")
        assert json.loads(socket.recv(timeout=30)) == {"response": "hello"}
        socket.send(json.dumps({"a": 1}))  # text frames reach the handler as str, as on Beam
        assert json.loads(socket.recv(timeout=30)) == {"response": '{"a": 1}'}


def _replicas(app_name: str) -> int:
    from ray import serve

    status = serve.status().applications[app_name]
    return sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())


def test_scale_from_zero_waits_for_a_replica_and_max_containers_holds(gateway):
    record = deploy(web_app.pid_handler)
    deadline = time.monotonic() + 60
    while _replicas(record.app_name) > 0 and time.monotonic() < deadline:
        time.sleep(1)
    assert _replicas(record.app_name) == 0, "keep_warm_seconds=2 should scale the idle deployment to zero"
    assert gateway.post("/endpoint/pid/v1", json={}).status_code == 200  # held until a replica is up

    def call(_):
        return gateway.post("/endpoint/pid/v1", json={"delay": 0.3}).json()["pid"]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        pids = set(pool.map(call, range(40)))
    assert 1 <= len(pids) <= 2 and _replicas(record.app_name) <= 2


def test_sixteen_clients_two_hundred_requests_each_without_errors(gateway, multiply_v1):
    def client(n):
        with httpx.Client(base_url=base(gateway), headers=gateway.headers, timeout=60) as own:
            return [own.post("/endpoint/multiply/v1", json={"x": i}).status_code for i in range(200)]

    with concurrent.futures.ThreadPoolExecutor(16) as pool:
        codes = [code for result in pool.map(client, range(16)) for code in result]
    assert len(codes) == 3200 and set(codes) == {200}


def test_delete_forgets_every_version(gateway):
    deploy(web_app.async_handler, name="doomed")
    removed = orchestrator.delete("doomed")
    assert removed and all(r.name == "doomed" for r in removed)
    assert not [r for r in orchestrator.list_deployments() if r.name == "doomed"]
    assert gateway.post("/endpoint/doomed", json={}).status_code == 404
