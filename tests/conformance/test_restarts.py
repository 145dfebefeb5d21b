"""Restarts the way users do them: ``cluster down && up`` (from another folder, with less hardware) and a
head killed with SIGKILL. Deployments come back, queued tasks still run, and what cannot come back is
reported in one line. These run last in the package (see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal

import pytest

from tests.conformance.conftest import User, wait_for


def _enqueue(user: User, count: int, seconds: float) -> list[str]:
    with user.http() as client:
        return [client.post("/taskqueue/restart-queue", json={"x": i, "seconds": seconds}).json()["task_id"]
                for i in range(count)]


def _task(user: User, task_id: str) -> dict:
    with user.http() as client:
        return client.get(f"/v2/task/{task_id}/").json()


def _all_complete(user: User, task_ids: list[str]) -> list[dict]:
    seen: list[dict] = []

    def done() -> list[dict] | None:
        seen[:] = [_task(user, task_id) for task_id in task_ids]
        return seen if all(task["status"] == "COMPLETE" for task in seen) else None

    try:
        return wait_for(done, timeout=120, interval=1, what="the tasks to complete")
    except pytest.fail.Exception:
        details = [(task["id"], task["status"], task["attempts"], task["error"]) for task in seen]
        pytest.fail(f"tasks did not all complete: {details}")


def test_cluster_down_and_up_brings_back_every_deployment_it_can(user: User) -> None:
    user.beamray("cluster", "down")
    user.beamray("cluster", "up", "--gpu", "T4")
    user.deploy(user.project("restart_web"), "app.py:multiply")
    user.deploy(user.project("restart_gpu"), "app.py:handler")
    user.deploy(user.project("parent_folder"), "sub/app.py:handler")  # typed in the parent folder
    user.deploy(user.project("restart_queue"), "app.py:handler")
    with user.http() as client:
        assert client.post("/endpoint/restart-gpu", json={}).json() == {"gpu": "T4"}
    queued = _enqueue(user, 4, seconds=1)

    user.beamray("cluster", "down")
    up = user.beamray("cluster", "up", cwd=user.root)  # no GPUs this time, typed in another folder

    shown = up.stdout + up.stderr
    assert "Traceback" not in shown
    assert "Restored restart-web v1" in shown and "Restored from-parent v1" in shown
    failed_lines = [line for line in shown.splitlines() if "Could not restore" in line]
    assert len(failed_lines) == 1 and "restart-gpu v1" in failed_lines[0]
    assert "accelerator_type:T4" in failed_lines[0]
    records = {record["name"]: record for record in json.loads(user.beamray("deployment", "list", "--json").stdout)}
    assert records["restart-gpu"]["status"] == "failed"
    assert "accelerator_type:T4" in records["restart-gpu"]["error"]
    assert records["restart-web"]["status"] == "running"
    assert "Failed" in user.beamray("deployment", "list").stdout
    with user.http() as client:
        assert client.post("/endpoint/restart-web", json={"x": 21}).json() == {"result": 42}
        assert client.post("/endpoint/from-parent", json={}).json() == {"answer": 42}
    tasks = _all_complete(user, queued)
    assert [task["result"] for task in tasks] == [{"doubled": 2 * i} for i in range(4)]


def test_a_head_killed_with_sigkill_comes_back_with_its_deployments_and_queued_tasks(user: User) -> None:
    queued = _enqueue(user, 5, seconds=1)
    waiting = [task_id for task_id in queued if _task(user, task_id)["status"] == "PENDING"]
    assert waiting, "some tasks must still be queued when the head dies"
    head = json.loads(user.beamray("cluster", "status", "--json").stdout)

    os.kill(head["pid"], signal.SIGKILL)
    wait_for(lambda: not json.loads(user.beamray("cluster", "status", "--json").stdout)["running"],
             timeout=30, what="the killed head to be gone")
    up = user.beamray("cluster", "up")

    assert "Traceback" not in up.stdout + up.stderr
    assert "Restored restart-web v1" in up.stderr
    with user.http() as client:
        assert client.post("/endpoint/restart-web", json={"x": 5}).json() == {"result": 10}
        assert client.post("/endpoint/from-parent", json={}).json() == {"answer": 42}
    tasks = _all_complete(user, waiting)  # tasks that had not started when the head died run now
    assert all(task["result"]["doubled"] % 2 == 0 for task in tasks)
    assert _all_complete(user, _enqueue(user, 1, seconds=0))[0]["result"] == {"doubled": 0}
