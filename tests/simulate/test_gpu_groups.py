"""Beam's H100 task queues and RTX 4090 endpoints on the KubeRay-shaped cluster's GPU groups.

The cluster (``gpu_cluster/``, the ``gpu_user`` fixture): a head with no CPUs, ``h100`` 0..1 and ``rtx4090``
0..1 nodes of 1 CPU, 2Gi + 1 GPU, ``cpu`` and ``a10g`` unable to grow; every group starts empty, idle nodes
go after 2 s. Each app is deployed with ``beamray deploy app.py:handler`` and called over the gateway with
the user's token, as Beam's docs do.
"""

from __future__ import annotations

import json

import httpx

from tests.conformance.support import TERMINAL
from tests.simulate.conftest import wait_for

H100 = "accelerator_type:H100"


def routed(http: httpx.Client, path: str, payload: dict) -> httpx.Response:
    """``POST path`` once the gateway routes the new deployment's alias (404 until then)."""
    return wait_for(lambda: (r := http.post(path, json=payload)).status_code != 404 and r, timeout=30,
                    what=f"the gateway to route {path}")


def nodes_without(user, group: str) -> set[str]:
    """The ids of the cluster's nodes, once none of them is of ``group`` (left over from another test)."""
    nodes = wait_for(lambda: (found := user.nodes()) and all(n["group"] != group for n in found) and found,
                     timeout=90, what=f"no {group} node to start with")
    return {node["node_id"] for node in nodes}


def test_h100_task_queue_runs_on_a_new_h100_node_that_goes_back_to_zero_when_idle(gpu_user):
    user = gpu_user
    before = nodes_without(user, "h100")
    user.beamray("deploy", "app.py:handler", cwd=user.project("h100_queue"))
    try:
        with user.http() as http:
            response = routed(http, "/taskqueue/h100-queue", {"x": 7})
            assert response.status_code == 200, response.text
            task_id = response.json()["task_id"]
            done = wait_for(lambda: (t := http.get(f"/v2/task/{task_id}/").json())["status"] in TERMINAL and t,
                            timeout=150, what=f"task {task_id} to end")
        assert done["status"] == "COMPLETE", done
        ran = done["result"]
        assert ran["square"] == 49 and ran["group"] == "h100" and ran["node_id"] not in before
        assert ran["resources"][H100] == 1 and ran["resources"]["GPU"] == 1 and ran["resources"]["CPU"] == 1
        # The queue stays deployed: its worker stops after keep_warm_seconds, then Ray removes the idle node.
        wait_for(lambda: user.nodes_of("h100") == [], timeout=90, what="the idle H100 node to be removed")
    finally:
        user.beamray("deployment", "delete", "h100-queue", check=False)


def test_rtx4090_endpoint_answers_from_a_new_rtx4090_node_that_goes_away_after_delete(gpu_user):
    user = gpu_user
    before = nodes_without(user, "rtx4090")
    user.beamray("deploy", "app.py:handler", cwd=user.project("rtx4090_endpoint"))
    try:
        with user.http() as http:
            response = routed(http, "/endpoint/rtx4090-where", {})
        assert response.status_code == 200, response.text
        ran = response.json()
        assert ran["group"] == "rtx4090" and ran["node_id"] not in before
        assert ran["resources"]["RTX4090"] == 1 and ran["resources"]["GPU"] == 1
    finally:
        user.beamray("deployment", "delete", "rtx4090-where", check=False)
    wait_for(lambda: user.nodes_of("rtx4090") == [], timeout=90, what="the RTX 4090 node to be removed")


def test_a_pod_on_a_new_rtx4090_node_is_reached_from_the_heads_pod_app(gpu_user):
    user = gpu_user
    before = nodes_without(user, "rtx4090")
    made = json.loads(user.beamray("deploy", "app.py:pod", "--json", cwd=user.project("rtx4090_pod")).stdout)
    try:
        containers = json.loads(user.beamray("container", "list", "--json").stdout)
        pod = next(c for c in containers if c["kind"] == "pod" and c["deployment"] == "gpu-pod")
        assert pod["node_id"] not in before and pod["node_id"] in {n["node_id"] for n in user.nodes_of("rtx4090")}
        with httpx.Client(timeout=60) as anonymous:  # a pod's default: authorized=False
            listing = anonymous.get(made["url"] + "/")
            assert listing.status_code == 200, listing.text
            assert "app.py" in listing.text
            streamed = anonymous.get(made["url"] + "/app.py")
            assert streamed.status_code == 200 and 'name="gpu-pod"' in streamed.text
    finally:
        user.beamray("deployment", "delete", "gpu-pod", check=False)
    wait_for(lambda: user.nodes_of("rtx4090") == [], timeout=90, what="the RTX 4090 node to be removed")
