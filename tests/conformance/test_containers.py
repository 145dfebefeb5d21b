"""The operator's view: ``beamray container list | exec | stop`` and ``beamray machine list``.

Beam's CLI: ``beam container list`` (every running container, with its id), ``beam container stop ID``,
``beam machine list``. One endpoint replica and one task-queue worker (and a pod, and a running function
call) are inspected through the ``beamray`` command; ids are checked against what the containers
themselves see (``CONTAINER_ID``) and what the task API reports.
"""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path

import httpx
import pytest

from tests.conformance.conftest import BEAMRAY, wait_for
from tests.conformance.support import EMULATED_GPUS, enqueue, ensure_emulated_gpus, finished, gateway, remove

CONTAINER_FIELDS = {"container_id", "kind", "deployment", "version", "deployment_id", "stub_id", "status",
                    "started_at", "node_id", "node_address", "pid", "cpu", "memory_mib", "gpu", "gpu_type",
                    "ray_actor_ids", "ray_actor_name", "ray_namespace", "ray_task_id", "task_id", "exit_code"}
MACHINE_FIELDS = {"node_id", "address", "state", "head", "cpu_total", "cpu_free", "memory_total_mib",
                  "memory_free_mib", "gpu_total", "gpu_free", "gpu_types", "started_at"}


def listed(user) -> list[dict]:
    return json.loads(user.beamray("container", "list", "--json").stdout)


def of(user, deployment: dict) -> list[dict]:
    """The listed containers of one deployment version."""
    return [c for c in listed(user) if c["deployment_id"] == deployment["deployment_id"]]


def exec_lines(user, container_id: str, *command: str) -> list[str]:
    return user.beamray("container", "exec", container_id, "--", *command).stdout.splitlines()


@pytest.fixture(scope="module")
def deployments(user):
    """An endpoint with one replica up, and a task queue whose worker ran one task (and stays warm)."""
    ensure_emulated_gpus(user)
    web = user.deploy(user.project("containers_web"), "app.py:handler")
    queue = user.deploy(user.project("containers_queue"), "app.py:handler")
    done = finished(user, enqueue(user, queue["url"]))
    answer = gateway(user).post(web["url"], json={})
    assert answer.status_code == 200, answer.text
    yield web, queue, done, answer.json()["container_id"]
    remove(user, web["name"])
    remove(user, queue["name"])


def test_list_shows_the_replica_and_the_task_worker_with_beam_ids(user, deployments):
    web, queue, done, replica_id = deployments
    [replica] = wait_for(lambda: of(user, web), what="the endpoint's replica in `container list`")
    [worker] = wait_for(lambda: of(user, queue), what="the task queue's worker in `container list`")
    assert replica["container_id"].startswith(f"endpoint-{web['stub_id'][:8]}-")
    assert replica["container_id"] == replica_id  # the CONTAINER_ID its handler sees
    assert (replica["kind"], replica["deployment"], replica["version"]) == ("endpoint", "inspect-web", web["version"])
    assert worker["container_id"].startswith(f"taskqueue-{queue['stub_id'][:8]}-")
    assert worker["container_id"] == done["container_id"]  # the id the task API reports for its task
    assert (worker["kind"], worker["deployment"]) == ("taskqueue", "inspect-queue")
    for container in (replica, worker):
        assert set(container) == CONTAINER_FIELDS
        assert (container["status"], container["cpu"], container["memory_mib"]) == ("RUNNING", 0.5, 128)
        assert container["node_address"] == "127.0.0.1" and container["pid"] and container["started_at"]

    table = user.beamray("container", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "Kind", "Deployment", "Status", "Uptime", "Node", "Resources"]
    row = next(line.split() for line in table if line.split()[:1] == [replica["container_id"]])
    assert row[1:5] == ["endpoint", "inspect-web", f"v{web['version']}", "RUNNING"]
    assert table[-1].strip().endswith("items")


def test_exec_runs_in_each_containers_code_directory_with_its_env(user, deployments):
    web, queue, _, _ = deployments
    for deployment, probe in ((web, "web-value"), (queue, "queue-value")):
        [container] = of(user, deployment)
        cid = container["container_id"]
        [cwd] = exec_lines(user, cid, "pwd")
        assert "app.py" in exec_lines(user, cid, "ls"), cwd  # the shipped code, where the process runs
        env = dict(line.split("=", 1) for line in exec_lines(user, cid, "env") if "=" in line)
        assert env["CONTAINERS_PROBE"] == probe
        assert env["CONTAINER_ID"] == cid
        assert env["STUB_ID"] == deployment["stub_id"]
        code = user.beamray("container", "exec", cid, "--", "python", "-c",
                            "import sys; print('out'); print('err', file=sys.stderr); sys.exit(3)", check=False)
        assert (code.returncode, code.stdout, code.stderr.splitlines()[-1:]) == (3, "out\n", ["err"])


def test_exec_of_a_missing_program_says_so_with_its_exit_code(user, deployments):
    [container] = of(user, deployments[0])
    result = user.beamray("container", "exec", container["container_id"], "--", "no-such-program", check=False)
    assert result.returncode == 127 and "no-such-program" in result.stderr and "Traceback" not in result.stderr


def test_stopped_replica_under_load_is_replaced_and_requests_succeed_again(user, deployments):
    web, _, _, _ = deployments
    [before] = of(user, web)
    http = gateway(user)
    answers: list[int] = []
    stop_load = threading.Event()

    def load() -> None:
        while not stop_load.is_set():
            try:
                answers.append(http.post(web["url"], json={"sleep": 0.05}).status_code)
            except httpx.HTTPError:
                answers.append(0)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for thread in threads:
        thread.start()
    try:
        wait_for(lambda: len(answers) > 5, what="requests to flow")
        stopped = user.beamray("container", "stop", before["container_id"]).stdout
        assert f"=> Stopped container {before['container_id']} (endpoint inspect-web v{web['version']})" in stopped
        after = wait_for(lambda: [c for c in of(user, web) if c["container_id"] != before["container_id"]
                                  and c["status"] == "RUNNING"], timeout=120, what="a replacement replica")
        seen = len(answers)
        wait_for(lambda: answers[seen:].count(200) >= 5, timeout=60, what="requests to succeed again")
    finally:
        stop_load.set()
        for thread in threads:
            thread.join()
    assert before["container_id"] not in [c["container_id"] for c in of(user, web)]
    assert after[0]["container_id"].startswith(f"endpoint-{web['stub_id'][:8]}-")


def test_stopped_task_worker_is_replaced_when_work_arrives(user, deployments):
    _, queue, _, _ = deployments
    [before] = wait_for(lambda: of(user, queue), what="the task queue's worker")
    user.beamray("container", "stop", before["container_id"])
    wait_for(lambda: before["container_id"] not in [c["container_id"] for c in of(user, queue)],
             what="the stopped worker to leave `container list`")
    done = finished(user, enqueue(user, queue["url"]))
    assert done["container_id"] != before["container_id"]
    assert done["container_id"] in [c["container_id"] for c in of(user, queue)]


def test_bad_container_ids_get_one_clear_error_with_the_next_step(user, deployments):
    for command in (("stop", "endpoint-nope-nope"), ("exec", "endpoint-nope-nope", "--", "pwd")):
        result = user.beamray("container", *command, check=False)
        assert result.returncode == 1
        assert "No running container has the id 'endpoint-nope-nope'" in result.stderr
        assert "`beamray container list`" in result.stderr and "Traceback" not in result.stderr
    assert user.beamray("container", "exec", "x", check=False).returncode == 2  # no command: a usage error


def test_machine_list_shows_the_emulated_gpus(user):
    ensure_emulated_gpus(user)
    [head] = [m for m in json.loads(user.beamray("machine", "list", "--json").stdout) if m["head"]]
    assert set(head) == MACHINE_FIELDS
    assert head["state"] == "ALIVE" and head["address"] == "127.0.0.1"
    assert {gpu: head["gpu_types"].get(gpu) for gpu in EMULATED_GPUS} == EMULATED_GPUS
    assert head["gpu_total"] == sum(EMULATED_GPUS.values()) and 0 <= head["gpu_free"] <= head["gpu_total"]
    assert head["cpu_total"] >= 4 and 0 <= head["cpu_free"] <= head["cpu_total"]
    assert 0 < head["memory_free_mib"] <= head["memory_total_mib"]
    table = user.beamray("machine", "list").stdout
    assert "A10G×2" in table and "H100×1" in table and "T4×1" in table and "ALIVE (head)" in table


def test_a_running_function_call_is_listed_by_its_container_id_and_exec_reaches_it(user):
    program = subprocess.Popen([*BEAMRAY, "run", "app.py"], cwd=user.project("containers_function"), env=user.env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL, text=True)
    printed: list[str] = []
    threading.Thread(target=lambda: printed.extend(program.stdout), daemon=True).start()
    try:
        [line] = wait_for(lambda: [line for line in printed if " container function-" in line], timeout=120,
                          what="the function to print its CONTAINER_ID")
        own_id = line.split()[-1]
        [call] = wait_for(lambda: [c for c in listed(user) if c["kind"] == "function"], what="the call listed")
        assert call["container_id"] == own_id and call["ray_task_id"] and call["cpu"] == 0.5
        [cwd] = exec_lines(user, own_id, "pwd")  # the call's own working directory, on its node
        assert cwd.startswith("/")
    finally:
        program.terminate()
        program.wait(timeout=60)


@pytest.mark.skipif(not (Path(__file__).parents[2] / "beamray" / "adapters" / "pod.py").exists(),
                    reason="Pods are not built yet")
def test_a_pod_is_listed_by_its_id_and_exec_reaches_it(user):
    deployment = user.deploy(user.project("containers_pod"), "app.py:pod")
    try:
        assert httpx.get(deployment["url"], timeout=120, follow_redirects=True).status_code == 200  # starts it
        [pod] = wait_for(lambda: of(user, deployment), what="the pod in `container list`")
        assert pod["container_id"].startswith(f"pod-{deployment['stub_id']}-")
        assert (pod["kind"], pod["deployment"], pod["status"]) == ("pod", "inspect-pod", "RUNNING")
        assert "app.py" in exec_lines(user, pod["container_id"], "ls")
        env = dict(line.split("=", 1) for line in exec_lines(user, pod["container_id"], "env") if "=" in line)
        assert env["CONTAINERS_PROBE"] == "pod-value"
        # inside the pod's own network: its port 8011 answers on its loopback (the node's has nothing there)
        fetch = "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:8011/').status)"
        assert exec_lines(user, pod["container_id"], "python", "-c", fetch) == ["200"]
        user.beamray("container", "stop", pod["container_id"])
        wait_for(lambda: not of(user, deployment), what="the stopped pod to leave `container list`")
    finally:
        remove(user, deployment["name"])
