"""Beam's task queues over HTTP and ``.put()``, and the task API (``GET /v2/task/{id}/``, ``DELETE
/v2/task/cancel/``).

Docs: Core Concepts › Task Queues, Running Async Tasks, Querying Task Status, Timeouts and Retries,
Runtime Variables, Pre-Loading Models › Using Loaders with Multiple Workers.
"""

from __future__ import annotations

import datetime
import json
import re

import httpx
import pytest

from tests.conformance.support import (
    CallbackReceiver, check_callback, deployed, enqueue, ensure_emulated_gpus, finished, gateway, point_at,
    remove, task, wait_for_status,
)

# "Querying Task Status": the response's fields, and those of its stub (as in the docs' JSON example).
TASK_FIELDS = {"id", "started_at", "ended_at", "status", "container_id", "updated_at", "created_at", "outputs",
               "stats", "stub"}
STUB_FIELDS = {"id", "name", "type", "config", "config_version", "created_at", "updated_at"}


@pytest.fixture(scope="module", autouse=True)
def emulated_gpus(user):
    """Two examples below ask for an A10G and a T4: the cluster emulates them."""
    ensure_emulated_gpus(user)


@pytest.fixture(scope="module")
def quickstart(user):
    """Core Concepts' task queue, deployed once, and one task it ran to COMPLETE."""
    deployment = user.deploy(user.project("quickstart_queue"), "app.py:handler")
    task_id = enqueue(user, deployment["url"])
    return deployment, finished(user, task_id)


def parse_time(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def test_http_request_enqueues_a_task_that_completes(quickstart):
    deployment, done = quickstart
    assert (deployment["name"], deployment["kind"]) == ("quickstart", "taskqueue")
    assert re.search(r"/taskqueue/quickstart/v\d+$", deployment["url"]), deployment
    assert done["status"] == "COMPLETE"
    assert re.fullmatch(r"[0-9a-f-]{36}", done["id"])


def test_task_status_has_the_documented_fields(quickstart):
    deployment, done = quickstart
    assert TASK_FIELDS <= set(done), sorted(TASK_FIELDS - set(done))
    assert set(done["stats"]) == {"active_containers", "queue_depth"}
    assert all(isinstance(value, int) for value in done["stats"].values())
    assert done["outputs"] == []
    assert done["container_id"]
    created, started, ended = (parse_time(done[key]) for key in ("created_at", "started_at", "ended_at"))
    assert created <= started <= ended <= parse_time(done["updated_at"])
    assert done["stub"]["id"] == deployment["stub_id"]
    assert STUB_FIELDS <= set(done["stub"]), sorted(STUB_FIELDS - set(done["stub"]))


def test_task_status_stub_config_shows_the_queue_defaults(quickstart):
    _, done = quickstart
    assert done["stub"]["type"] == "taskqueue/deployment"
    config = done["stub"]["config"]
    assert config["handler"] == "app:handler"
    assert (config["workers"], config["keep_warm_seconds"], config["max_pending_tasks"]) == (1, 10, 100)
    assert (config["task_policy"]["max_retries"], config["task_policy"]["timeout"]) == (3, 3600)
    assert config["autoscaler"] == {"type": "queue_depth", "max_containers": 1, "tasks_per_container": 1,
                                    "min_containers": 0}
    assert (config["runtime"]["cpu"], config["runtime"]["memory"]) == (1000, 128)


def test_saved_output_is_listed_on_the_task_and_downloadable(user):
    deployment = user.deploy(user.project("output_queue"), "app.py:handler", "--name", "result-queue")
    done = finished(user, enqueue(user, deployment["url"]))
    (output,) = done["outputs"]
    assert output["name"] == "result.txt"
    assert 0 < output["expires_in"] <= 3600
    response = httpx.get(output["url"], timeout=60)  # an Output URL needs no token
    assert (response.status_code, response.text) == (200, "The result is: 15102")


def test_gpu_task_queue_saves_its_output_and_fires_its_webhook(user):
    project = user.project("gpu_output_queue")
    with CallbackReceiver() as receiver:
        point_at(project, "https://webhook.site/9b74f73d-9ec1-4c8e-adcc-07c78aafab6d", receiver.url)
        with deployed(user, project, "app.py:handler", "--name", "sum-queue") as deployment:
            task_id = enqueue(user, deployment["url"])
            done = finished(user, task_id)
        assert [output["name"] for output in done["outputs"]] == ["sum.txt"]
        assert httpx.get(done["outputs"][0]["url"], timeout=60).text == "The sum is: 15102"
        request = receiver.first()
    assert check_callback(user, request, "COMPLETE") == task_id
    assert "data" in json.loads(request["body"])


def test_retries_then_fails(user):
    deployment = user.deploy(user.project("retry_queue"), "app.py:handler", "--name", "retry-queue")
    done = wait_for_status(user, enqueue(user, deployment["url"]))
    assert done["status"] in ("FAILED", "ERROR"), done
    assert done["attempts"] == 3  # retries=2: the first run and two retries


def test_put_prints_the_enqueued_task_which_completes(user):
    project = user.project("enqueue_put")
    try:
        output = user.beamray("run", "app.py", cwd=project).stdout
        (task_id,) = re.findall(r"^Enqueued task: ([0-9a-f-]{36})$", output, re.MULTILINE)
        done = finished(user, task_id)
        assert done["result"] == {"result": 20}
    finally:
        remove(user, "multiply")  # keep_warm_seconds=1000 would hold its T4 for the rest of the run


def test_handler_context_runs_in_a_task(user):
    deployment = user.deploy(user.project("context_queue"), "app.py:handler", "--name", "context-queue")
    done = finished(user, enqueue(user, deployment["url"]))
    assert done["container_id"]


def test_on_start_runs_once_in_each_worker(user):
    deployment = user.deploy(user.project("loader_workers"), "app.py:handler", "--name", "loader-workers")
    task_ids = [enqueue(user, deployment["url"]) for _ in range(2)]
    results = [finished(user, task_id)["result"] for task_id in task_ids]
    assert results[0]["pid"] != results[1]["pid"], results  # the two tasks ran in the two workers
    assert all(result["on_start_value"] == {"loaded_by": result["pid"]} for result in results), results


def test_cancel_stops_a_running_task(user):
    deployment = user.deploy(user.project("timeout_function"), "app.py:timeout")
    assert (deployment["name"], deployment["kind"]) == ("timeout", "function")
    task_id = enqueue(user, deployment["url"])  # POST /function/timeout answers a task id
    wait_for_status(user, task_id, {"RUNNING"}, timeout=60)  # it sleeps 350 s
    response = gateway(user).request("DELETE", "/v2/task/cancel/", json={"task_ids": [task_id]})
    assert (response.status_code, response.json()) == (200, {})
    assert wait_for_status(user, task_id, timeout=30)["status"] == "CANCELLED"
    assert task(user, task_id)["ended_at"]
