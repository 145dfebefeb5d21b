"""Restarts the way users do them: ``cluster down && up`` (from another folder, with less hardware) and a
head killed with SIGKILL. Deployments come back (endpoints, a pod, the running versions only), finished
task records and their results are kept, queued and running tasks still run, and what cannot come back is
reported in one line. These run last in the package (see tests/conftest.py)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

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


@pytest.mark.timeout(600)
def _pod_processes(user: User) -> list[int]:
    """Processes of this user's pods (their entrypoints carry the pod's CONTAINER_ID and BEAMRAY_HOME)."""
    home = f"BEAMRAY_HOME={user.home / '.beamray'}".encode()
    found = []
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            variables = environ.read_bytes().split(b"\0")
        except OSError:
            continue
        if home in variables and any(v.startswith(b"CONTAINER_ID=pod-") for v in variables):
            found.append(int(environ.parent.name))
    return found


def test_cluster_down_and_up_brings_back_every_deployment_it_can(user: User) -> None:
    """Endpoints, a pod and the running versions come back (a stopped version stays stopped), one line
    names what cannot (a T4 endpoint without T4s); a finished task keeps its record and result, and the
    task that was RUNNING and those still PENDING at the down complete after the up."""
    user.beamray("cluster", "down")
    user.beamray("cluster", "up", "--gpu", "T4")
    user.deploy(user.project("restart_web"), "app.py:multiply")
    user.deploy(user.project("restart_gpu"), "app.py:handler")
    user.deploy(user.project("parent_folder"), "sub/app.py:handler")  # typed in the parent folder
    user.deploy(user.project("restart_queue"), "app.py:handler")
    pod = user.deploy(user.project("pod_http_server", folder="pod_restart"), "app.py:pod",
                      "--name", "restart-pod", "--cpu", "0.5")
    versions = user.project("restart_versions")
    user.deploy(versions, "app.py:multiply")
    assert user.deploy(versions, "app.py:multiply")["version"] == 2
    assert "Stopped restart-versions v1" in user.beamray("deployment", "stop", "restart-versions:v1").stdout
    with user.http() as client:
        assert client.post("/endpoint/restart-gpu", json={}).json() == {"gpu": "T4"}
    with user.http() as client:
        def submit(x: int, seconds: float) -> str:
            return client.post("/taskqueue/restart-queue", json={"x": x, "seconds": seconds}).json()["task_id"]

        def statuses(task_ids: list[str]) -> list[str]:
            return [client.get(f"/v2/task/{task_id}/").json()["status"] for task_id in task_ids]

        finished = submit(21, seconds=0)
        wait_for(lambda: statuses([finished]) == ["COMPLETE"], timeout=120, what="the first task to complete")
        # One container (the default autoscaler): x=0 runs while x=1..3 wait behind it.
        queued = [submit(0, seconds=6)] + [submit(i, seconds=0) for i in range(1, 4)]
        wait_for(lambda: statuses(queued[:1]) == ["RUNNING"], timeout=60, interval=0.1,
                 what="the first queued task to be running")
        assert statuses(queued) == ["RUNNING", "PENDING", "PENDING", "PENDING"]
    assert _task(user, finished)["result"] == {"doubled": 42}

    try:
        assert _pod_processes(user), "the deployed pod's entrypoint should be running before the down"
        user.beamray("cluster", "down")
        assert _pod_processes(user) == [], "`cluster down` left pod processes running"
        up = user.beamray("cluster", "up", cwd=user.root)  # no GPUs this time, typed in another folder

        shown = up.stdout + up.stderr
        assert "Traceback" not in shown
        assert "Restored restart-web v1" in shown and "Restored from-parent v1" in shown
        assert "Restored restart-versions v2" in shown and "restart-versions v1" not in shown
        failed_lines = [line for line in shown.splitlines() if "Could not restore" in line]
        assert len(failed_lines) == 1 and "restart-gpu v1" in failed_lines[0]
        assert "accelerator_type:T4" in failed_lines[0]
        records = {(record["name"], record["version"]): record
                   for record in json.loads(user.beamray("deployment", "list", "--json").stdout)}
        assert records[("restart-gpu", 1)]["status"] == "failed"
        assert "accelerator_type:T4" in records[("restart-gpu", 1)]["error"]
        assert records[("restart-web", 1)]["status"] == "running"
        assert records[("restart-versions", 1)]["status"] == "stopped"
        assert records[("restart-versions", 2)]["status"] == "running"
        listing = user.beamray("deployment", "list").stdout
        assert "Failed" in listing and "restart-pod" in listing
        with user.http() as client:
            assert client.post("/endpoint/restart-web", json={"x": 21}).json() == {"result": 42}
            assert client.post("/endpoint/from-parent", json={}).json() == {"answer": 42}
            assert client.post("/endpoint/restart-versions/v2", json={"x": 3}).json() == {"result": 6}
            assert client.post("/endpoint/restart-versions/v1", json={"x": 3}).status_code == 404
            kept = client.get(f"/v2/task/{finished}/").json()  # finished before the down: kept, not rerun
            assert kept["status"] == "COMPLETE" and kept["result"] == {"doubled": 42}, kept
        with user.http(authorized=False) as anonymous:
            page = anonymous.get(pod["url"] + "/")  # started on demand by the restored pods app
            assert page.status_code == 200 and "app.py" in page.text, page.text
        tasks = _all_complete(user, queued)
        assert [task["result"] for task in tasks] == [{"doubled": 2 * i} for i in range(4)]
    finally:
        for name in ("restart-pod", "restart-versions"):  # free their CPUs for the SIGKILL test
            user.beamray("deployment", "delete", name, check=False)


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
