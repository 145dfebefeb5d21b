"""Beam apps on a KubeRay-shaped cluster whose worker groups Ray's autoscaler adds and removes.

The cluster (``conftest.py``): a head with no CPUs, ``cpu`` 0..2 nodes of 1 CPU, 4Gi, ``a10g`` 0..1 node of
2 CPU, 3Gi + 1 A10G, ``h100`` at maxReplicas 0; every group starts empty, idle nodes go after 2 s.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from urllib.parse import urlsplit

from tests.conformance.conftest import BEAMRAY
from tests.conformance.support import TERMINAL, enqueue, finished, program_lines
from tests.simulate.conftest import wait_for

A10G = "accelerator_type:A10G"


def run_json(user, app: str):
    result = user.beamray("run", "app.py", cwd=user.project(app), timeout=240)
    return json.loads(program_lines(result.stdout)[-1])


def test_gpu_priority_list_falls_back_to_a10g_when_the_h100_group_cannot_grow(user):
    ran = run_json(user, "gpu_fallback")
    assert ran["group"] == "a10g" and A10G in ran["resources"] and "accelerator_type:H100" not in ran["resources"]


def test_a10g_function_gets_a_new_a10g_node_that_goes_away_when_idle(user):
    wait_for(lambda: user.nodes_of("a10g") == [], timeout=90, what="no A10G node to start with")
    before = {node["node_id"] for node in user.nodes()}
    ran = run_json(user, "a10g_node")
    assert ran["group"] == "a10g" and ran["node_id"] not in before
    assert ran["resources"][A10G] == 1 and ran["resources"]["GPU"] == 1 and ran["resources"]["CPU"] == 2
    wait_for(lambda: user.nodes_of("a10g") == [], timeout=90, what="the idle A10G node to be removed")


def test_map_over_50_inputs_queues_on_at_most_max_replicas_cpu_nodes(user):
    results = run_json(user, "map_limit")
    assert sorted(r["square"] for r in results) == [x * x for x in range(50)]
    assert {r["group"] for r in results} == {"cpu"}
    assert 1 <= len({r["node_id"] for r in results}) <= 2  # the cpu group's maxReplicas


def test_a_gpu_type_no_group_offers_fails_at_once(user):
    result = user.beamray("run", "app.py", cwd=user.project("no_such_gpu"), check=False, timeout=120)
    assert result.returncode != 0
    assert "which no node of the cluster can provide" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_volume_file_written_on_a_gpu_node_is_read_on_a_cpu_node(user):
    ran = run_json(user, "volume_nodes")
    assert ran == {"writer": "a10g", "reader": {"text": "written on a10g", "group": "cpu"}}


def test_remote_deploy_through_the_dashboard_runs_on_a_worker_node(user):
    """The EKS walk-through's remote path: BEAMRAY_ADDRESS at the dashboard, commands run as Ray jobs."""
    dashboard = json.loads(user.beamray("cluster", "status", "--json").stdout)["dashboard_url"]
    remote = {"BEAMRAY_ADDRESS": dashboard}
    try:
        deployed = user.beamray("deploy", "app.py:where", cwd=user.project("remote_endpoint"), env=remote,
                                timeout=300)
        # The alias URL goes through the head's gateway, which reads the same registry and token as the job:
        # a job on the embedded head passes the head's own locators on (locations.worker_settings).
        with user.http() as http:
            response = wait_for(lambda: (r := http.post("/endpoint/where", json={})).status_code != 404 and r,
                                timeout=30, what=f"the deployed endpoint's URL\n{deployed.stdout}")
        assert response.status_code == 200 and response.json() == {"group": "cpu"}
    finally:
        user.beamray("deployment", "delete", "where", check=False, env=remote)


def _raylet_of(node_id: str) -> int | None:
    """The pid of the simulated node's raylet (a process of this test's cluster)."""
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"/raylet") and any(node_id.encode() in arg for arg in args):
            return int(cmdline.parent.name)
    return None


def _runs(user, volume: str) -> list[tuple[int, str]]:
    """``(input, node id)`` of every run the queue_node_loss handler recorded in its Volume."""
    listed = user.beamray("ls", volume, "--json", check=False)
    if listed.returncode != 0:  # the Volume appears with the first run
        return []
    return [(int(i), node) for i, node, _ in (entry["name"].split(".") for entry in json.loads(listed.stdout))]


def test_a_node_lost_under_a_task_queue_still_completes_every_task(user):
    """At least once: the tasks a killed worker held are retried elsewhere (their ``retries``); a second run
    of a task only ever follows a run on the killed node."""
    user.beamray("deploy", "app.py:handler", cwd=user.project("queue_node_loss"))
    try:
        with user.http() as http:
            first = wait_for(lambda: (r := http.post("/taskqueue/node-loss-queue", json={"i": 0})).status_code != 404
                             and r, timeout=30, what="the gateway to route the queue")
            assert first.status_code == 200, first.text
            task_ids = [first.json()["task_id"]]
            for i in range(1, 50):
                response = http.post("/taskqueue/node-loss-queue", json={"i": i})
                assert response.status_code == 200, response.text
                task_ids.append(response.json()["task_id"])
            ran = wait_for(lambda: _runs(user, "queue-runs"), timeout=120, what="a task to start on a cpu node")
            killed = ran[0][1]
            assert killed in {node["node_id"] for node in user.nodes_of("cpu")}
            pid = wait_for(lambda: _raylet_of(killed), timeout=10, what="the node's raylet")
            os.kill(pid, signal.SIGKILL)

            def ended(task_id: str):
                found = http.get(f"/v2/task/{task_id}/").json()
                return found if found["status"] in TERMINAL else None

            done = [wait_for(lambda: ended(task_id), timeout=240, what=f"task {task_id} to end")
                    for task_id in task_ids]
    finally:
        user.beamray("deployment", "delete", "node-loss-queue", check=False)
    assert [task["status"] for task in done] == ["COMPLETE"] * 50, [t for t in done if t["status"] != "COMPLETE"]
    assert [task["result"]["i"] for task in done] == list(range(50))
    runs = _runs(user, "queue-runs")
    assert any(node == killed for _, node in runs)
    assert any(task["attempts"] > 1 for task in done)  # what the killed worker held ran again elsewhere
    for i, task in enumerate(done):
        nodes = [node for j, node in runs if j == i]
        assert task["result"]["node_id"] in nodes, (i, nodes)
        nodes.remove(task["result"]["node_id"])
        assert set(nodes) <= {killed}, (i, task, nodes)  # a second run only for a run the kill cut short
    wait_for(lambda: user.nodes_of("cpu") == [], timeout=90, what="the queue's cpu nodes to be removed")

def test_a_node_lost_in_the_middle_of_a_map_still_gives_every_result(user):
    """At least once: Ray retries the calls of the lost node elsewhere (Ray's max_retries)."""
    project = user.project("map_node_loss")
    run = subprocess.Popen([*BEAMRAY, "run", "app.py"], cwd=project, env=user.env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        busy = wait_for(lambda: [n for n in user.nodes_of("cpu") if n["resources"].get("CPU")], timeout=120,
                        what="a cpu node running the map")
        pid = wait_for(lambda: _raylet_of(busy[0]["node_id"]), timeout=10, what="the node's raylet")
        os.kill(pid, signal.SIGKILL)
        out, err = run.communicate(timeout=300)
    finally:
        run.kill()
    assert run.returncode == 0, err
    assert json.loads(program_lines(out)[-1]) == [x * x for x in range(200)]



def test_an_output_saved_on_a_gpu_node_is_fetched_through_the_gateway(user):
    """Deployed and invoked over HTTP, as the conformance test of the docs' example is."""
    deployment = user.deploy(user.project("output_gpu_node"), "app.py:save_output")
    try:
        ran = finished(user, enqueue(user, deployment["url"]), timeout=180)["result"]
        assert ran["group"] == "a10g"
        url = urlsplit(ran["output_url"])
        assert url.path.startswith("/output/id/")
        with user.http(authorized=False) as anonymous:  # a public URL, signed: no token
            response = anonymous.get(f"{url.path}?{url.query}" if url.query else url.path)
        assert response.status_code == 200, response.text[:300]
        assert response.text == "This is an output, saved on an A10G node."
    finally:
        user.beamray("deployment", "delete", deployment["name"], check=False)
