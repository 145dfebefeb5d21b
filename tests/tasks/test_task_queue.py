"""Task queues on the session cluster: real task service, real HTTP, real worker processes."""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.server
import json
import os
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from beamray import callbacks
from beamray import deploy as orchestrator
from beamray.tasks import client
from tests.apps import tasks_app

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def deploy(handle):
    return orchestrator.deploy(handle.parent.spec_for(handle.func), code_root=REPO)


def wait_for(task_id: str, statuses: tuple[str, ...], timeout: float = 90) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        task = client.get(task_id)
        if task["status"] in statuses:
            return task
        time.sleep(0.1)
    raise AssertionError(f"task {task_id} stayed {client.get(task_id)['status']}, wanted {statuses}")


def test_http_enqueue_then_task_api_shows_the_lifecycle(gateway):
    deploy(tasks_app.double)
    response = gateway.post("/taskqueue/double", json={"x": 21})
    assert response.status_code == 200
    task_id = response.json()["task_id"]
    seen = {client.get(task_id)["status"]}
    task = wait_for(task_id, ("COMPLETE",))
    seen.add(task["status"])
    assert seen <= {"PENDING", "RUNNING", "COMPLETE"}
    api = gateway.get(f"/v2/task/{task_id}/").json()
    assert api["status"] == "COMPLETE" and api["result"] == {"result": 42, "task_id": task_id}
    for field in ("id", "started_at", "ended_at", "container_id", "created_at", "updated_at", "outputs",
                  "stats", "stub"):
        assert field in api
    assert api["container_id"].startswith("taskqueue-") and set(api["stats"]) == {"active_containers",
                                                                                  "queue_depth"}
    assert api["stub"]["name"] == "taskqueue/double" and api["stub"]["config"]["task_policy"]["max_retries"] == 2


def test_put_returns_a_task_whose_result_can_be_awaited(gateway):
    task = tasks_app.double.put(x=5)
    assert task.id and task.result(wait=True)["result"] == 10
    assert task.status() == "COMPLETE" and task.is_complete()


def test_bad_payloads_and_auth(gateway):
    deploy(tasks_app.double)
    assert gateway.post("/taskqueue/double", content=b"{nope",
                        headers={"Content-Type": "application/json"}).status_code == 400
    assert httpx.post(f"{str(gateway.base_url).rstrip('/')}/taskqueue/double", json={"x": 1}).status_code == 401
    assert gateway.get("/v2/task/not-a-task/").status_code == 404
    assert gateway.request("DELETE", "/v2/task/cancel/", content=b'{"task_ids": "x"}').status_code == 400
    assert gateway.post("/taskqueue/double/warmup").status_code == 200
    assert gateway.post("/taskqueue/nothing-here", json={}).status_code == 404


def test_retry_for_exception_retries_then_completes(gateway, tmp_path):
    deploy(tasks_app.flaky)
    response = gateway.post("/taskqueue/flaky", json={"counter": str(tmp_path / "n"), "fail_times": 2})
    assert response.status_code == 200, response.text
    task_id = response.json()["task_id"]
    task = wait_for(task_id, ("COMPLETE", "FAILED"))
    assert task["status"] == "COMPLETE" and task["result"] == {"attempts": 3} and task["attempts"] == 3


def test_plain_exception_fails_with_the_traceback(gateway):
    deploy(tasks_app.broken)
    task_id = gateway.post("/taskqueue/broken", json={}).json()["task_id"]
    task = wait_for(task_id, ("FAILED",))
    assert "ValueError: always broken" in task["error"] and task["attempts"] == 1
    assert client.list_tasks(["ERROR"], "broken")[0]["id"] == task_id  # the SDK's ERROR is an alias


def test_killed_worker_is_retried_and_completes_exactly_once(gateway, tmp_path):
    deploy(tasks_app.killable)
    pid_file, done_file = tmp_path / "pid", tmp_path / "done"
    task_id = gateway.post("/taskqueue/killable", json={"pid_file": str(pid_file),
                                                        "done_file": str(done_file)}).json()["task_id"]
    deadline = time.monotonic() + 60
    while not pid_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(int(pid_file.read_text()), signal.SIGKILL)
    task = wait_for(task_id, ("COMPLETE", "FAILED"))
    assert task["status"] == "COMPLETE" and task["attempts"] == 2
    assert done_file.read_text() == "completed\n"


def test_timeout_stops_the_running_code(gateway, tmp_path):
    deploy(tasks_app.slow)
    marker = tmp_path / "pid"
    task_id = gateway.post("/taskqueue/slow", json={"seconds": 30, "marker": str(marker)}).json()["task_id"]
    task = wait_for(task_id, ("TIMEOUT", "COMPLETE", "FAILED"))
    assert task["status"] == "TIMEOUT"
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)  # the worker running it is gone


def test_timeout_counts_from_the_task_start_not_the_container_start(gateway):
    deploy(tasks_app.slow_start)  # on_start takes 4 s, timeout is 2 s, the task itself 0.5 s
    task_id = gateway.post("/taskqueue/slow-start", json={}).json()["task_id"]
    task = wait_for(task_id, ("TIMEOUT", "COMPLETE", "FAILED"))
    assert task["status"] == "COMPLETE", task
    assert task["result"] == {"on_start": "loaded"}


def test_cancel_running_and_pending_tasks_and_queue_limit(gateway, tmp_path):
    deploy(tasks_app.blocking)  # max_containers=1, max_pending_tasks=3
    marker = tmp_path / "pid"
    running = gateway.post("/taskqueue/blocking", json={"seconds": 60, "marker": str(marker)}).json()["task_id"]
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)  # the handler has started
    pending = [gateway.post("/taskqueue/blocking", json={"seconds": 60}).json()["task_id"] for _ in range(3)]
    full = gateway.post("/taskqueue/blocking", json={"seconds": 60})
    assert full.status_code == 429 and "max_pending_tasks" in full.json()["error"]
    assert gateway.request("DELETE", "/v2/task/cancel/", json={"task_ids": [running, *pending]}).json() == {}
    for task_id in [running, *pending]:
        assert client.get(task_id)["status"] == "CANCELLED"
    time.sleep(1)
    with pytest.raises(ProcessLookupError):
        os.kill(int(marker.read_text()), 0)


def test_task_never_picked_up_expires(gateway):
    deploy(tasks_app.expiring)  # ttl 1 s, one container
    blocker = gateway.post("/taskqueue/expiring", json={"seconds": 4}).json()["task_id"]
    waiting = gateway.post("/taskqueue/expiring", json={}).json()["task_id"]
    assert wait_for(waiting, ("EXPIRED", "COMPLETE"))["status"] == "EXPIRED"
    assert wait_for(blocker, ("COMPLETE",))["status"] == "COMPLETE"


class _Receiver(http.server.BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append((dict(self.headers), body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def verify_signature(request_body: bytes, secret_key: str, timestamp: int, signature: str):
    """Beam docs' verification code, verbatim."""
    base64_payload = base64.b64encode(request_body).decode()
    data_to_sign = f"{base64_payload}:{timestamp}"
    h = hmac.new(secret_key.encode(), data_to_sign.encode(), hashlib.sha256)
    computed_signature = h.hexdigest()
    assert signature == computed_signature


def test_request_level_callback_is_signed_for_success_and_failure(gateway):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    try:
        deploy(tasks_app.notify)
        ok = gateway.post("/taskqueue/notify", json={"x": 1, "callback_url": url}).json()["task_id"]
        bad = gateway.post("/taskqueue/notify", json={"x": -1, "callback_url": url}).json()["task_id"]
        wait_for(ok, ("COMPLETE",)), wait_for(bad, ("FAILED",))
        deadline = time.monotonic() + 20
        while len(_Receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        by_task = {headers["x-task-id"]: (headers, body) for headers, body in _Receiver.received}
        headers, body = by_task[ok]
        assert headers["x-task-status"] == "COMPLETE" and json.loads(body)["data"]["result"] == 2
        verify_signature(body, callbacks.signing_key(), int(headers["x-task-timestamp"]),
                         headers["x-task-signature"])
        assert by_task[bad][0]["x-task-status"] == "FAILED"
    finally:
        server.shutdown()


def test_two_hundred_tasks_complete_exactly_once(gateway):
    queue = deploy(tasks_app.bulk).app_name
    ids = [client.submit(queue, [], {"x": i}) for i in range(200)]
    assert len(set(ids)) == 200
    results = {task_id: wait_for(task_id, ("COMPLETE", "FAILED"), timeout=240) for task_id in ids}
    assert all(task["status"] == "COMPLETE" and task["attempts"] == 1 for task in results.values())
    assert sorted(task["result"]["result"] for task in results.values()) == [2 * i for i in range(200)]


def test_subscribe_streams_status_events_until_the_end(gateway):
    task_id = gateway.post("/taskqueue/double", json={"x": 2}).json()["task_id"]
    with gateway.stream("GET", f"/v2/task/{task_id}/subscribe") as stream:
        text = "".join(stream.iter_text())
    events = [json.loads(line[len("data: "):]) for line in text.splitlines() if line.startswith("data: ")]
    assert events[-1]["status"] == "COMPLETE" and events[-1]["result"]["result"] == 4
    assert text.count("event: status") == len(events)
