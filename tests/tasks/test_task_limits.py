"""What a task queue refuses or lets go, on the session cluster: stopped queues, oversized tasks."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from beamray import deploy as orchestrator
from beamray.exceptions import TaskTooLargeError
from beamray.tasks import client, records
from tests.apps import tasks_app
from tests.tasks.test_task_queue import deploy, wait_for

pytestmark = pytest.mark.cluster
REPO = Path(__file__).resolve().parents[2]


def test_tasks_of_a_stopped_queue_expire_and_their_waiters_return(gateway):
    record = deploy(tasks_app.stoppable)  # one container: the second and third task wait behind the first
    first = gateway.post("/taskqueue/stoppable", json={"seconds": 30}).json()["task_id"]
    waiting = [gateway.post("/taskqueue/stoppable", json={}).json()["task_id"] for _ in range(2)]
    wait_for(first, ("RUNNING",))
    orchestrator.stop(record.deployment_id)
    started = time.monotonic()
    assert client.Task(waiting[0]).result(wait=True) is None  # returns instead of waiting forever
    assert time.monotonic() - started < 20
    for task_id in waiting:
        task = client.get(task_id)
        assert task["status"] == "EXPIRED" and "stopped before the task ran" in task["error"]


def test_arguments_over_the_limit_are_refused_and_nothing_is_kept(gateway):
    record = deploy(tasks_app.sized)
    with pytest.raises(TaskTooLargeError, match="over the 16.0 MiB a task may carry"):
        client.submit(record.app_name, ["x" * (records.MAX_PAYLOAD_BYTES + 1)], {})
    assert client.list_tasks(name="sized", status=["PENDING", "RUNNING"]) == []
    small = client.submit(record.app_name, [3], {})
    assert wait_for(small, ("COMPLETE",))["result"] == "xxx"


def test_a_result_over_the_limit_fails_the_task_with_a_clear_error(gateway):
    record = deploy(tasks_app.sized)
    task_id = client.submit(record.app_name, [records.MAX_PAYLOAD_BYTES + 10], {})
    task = wait_for(task_id, ("FAILED", "COMPLETE"))
    assert task["status"] == "FAILED" and task["result"] is None
    assert "save large results with beam's Output" in task["error"]
