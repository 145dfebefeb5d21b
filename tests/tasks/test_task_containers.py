"""Task-queue containers: worker processes scale with queue depth, run on_start once, stop after keep_warm."""

from __future__ import annotations

import concurrent.futures
import os
import time
from pathlib import Path

import pytest
import ray
from ray.util import state

from beamray import deploy as orchestrator
from beamray.exceptions import TaskQueueFullError
from beamray.tasks import client
from tests.apps import tasks_app
from tests.tasks.test_task_queue import wait_for

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def deploy(handle):
    return orchestrator.deploy(handle.parent.spec_for(handle.func), code_root=REPO)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_workers_scale_to_max_containers_run_on_start_once_and_stop_after_keep_warm(gateway):
    queue = deploy(tasks_app.warm).app_name  # max_containers=2, tasks_per_container=1, keep_warm_seconds=2
    ids = [client.submit(queue, [], {"seconds": 0.5}) for _ in range(6)]
    results = [wait_for(task_id, ("COMPLETE",))["result"] for task_id in ids]
    pids = {result["pid"] for result in results}
    assert len(pids) == 2, "six queued tasks, at most two containers of one worker each"
    assert all(result["on_start_pid"] == result["pid"] for result in results), "on_start ran in each worker"
    assert len({result["container_id"] for result in results}) == 2
    assert ray.get(client.service().stats.remote(queue))["active_containers"] == 2
    deadline = time.monotonic() + 30
    while ray.get(client.service().stats.remote(queue))["active_containers"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert ray.get(client.service().stats.remote(queue)) == {"active_containers": 0, "queue_depth": 0}
    time.sleep(1)
    assert not any(_alive(pid) for pid in pids), "idle workers stop after keep_warm_seconds"
    again = wait_for(client.submit(queue, [], {}), ("COMPLETE",))["result"]
    assert again["pid"] not in pids and again["on_start_pid"] == again["pid"]


def test_task_held_by_a_busy_worker_stays_pending_until_it_starts(gateway):
    deploy(tasks_app.blocking)  # one container, max_pending_tasks=3
    first = gateway.post("/taskqueue/blocking", json={"seconds": 2}).json()["task_id"]
    wait_for(first, ("RUNNING",))
    second = gateway.post("/taskqueue/blocking", json={"seconds": 0}).json()["task_id"]
    time.sleep(0.5)
    held = client.get(second)
    assert held["status"] == "PENDING" and held["started_at"] is None and held["stats"]["queue_depth"] == 1
    done_first, done_second = wait_for(first, ("COMPLETE",)), wait_for(second, ("COMPLETE",))
    assert done_second["attempts"] == 1 and done_second["started_at"] >= done_first["ended_at"]


def test_concurrent_enqueues_share_calls_and_each_caller_gets_its_own_outcome(gateway, tmp_path):
    queue = deploy(tasks_app.blocking).app_name  # one container, max_pending_tasks=3
    marker = tmp_path / "pid"
    running = client.submit(queue, [], {"seconds": 60, "marker": str(marker)})
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)

    def enqueue(_: int) -> str:
        try:
            return client.submit(queue, [], {"seconds": 60})
        except TaskQueueFullError as exc:
            return f"full: {exc}"

    with concurrent.futures.ThreadPoolExecutor(12) as pool:
        outcomes = list(pool.map(enqueue, range(12)))
    accepted = [outcome for outcome in outcomes if not outcome.startswith("full: ")]
    assert len(accepted) == 3 and len(set(accepted)) == 3, outcomes
    assert all("max_pending_tasks" in outcome for outcome in outcomes if outcome.startswith("full: "))
    assert sorted(client.cancel([running, *accepted])) == sorted([running, *accepted])


def test_many_threads_enqueueing_at_once_get_distinct_tasks_that_all_complete(gateway):
    queue = deploy(tasks_app.bulk).app_name
    with concurrent.futures.ThreadPoolExecutor(32) as pool:
        ids = list(pool.map(lambda i: client.submit(queue, [], {"x": i}), range(120)))
    assert len(set(ids)) == 120
    results = [wait_for(task_id, ("COMPLETE", "FAILED"), timeout=240) for task_id in ids]
    assert [task["result"]["result"] for task in results] == [2 * i for i in range(120)]


def test_each_task_is_findable_in_the_dashboard_by_handler_and_task_id(gateway, ray_cluster):
    record = deploy(tasks_app.double)
    task_id = client.submit(record.app_name, [], {"x": 1})
    wait_for(task_id, ("COMPLETE",))
    name = f"{record.handler} task={task_id}"
    deadline = time.monotonic() + 30
    found = []
    while time.monotonic() < deadline:  # task events reach the dashboard asynchronously
        found = state.list_tasks(address=ray_cluster["dashboard_url"], filters=[("name", "=", name)])
        if found and found[0].state == "FINISHED":
            break
        time.sleep(0.5)
    assert len(found) == 1 and found[0].state == "FINISHED", found
