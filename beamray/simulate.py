"""``beamray cluster up --simulate MANIFEST``: the embedded cluster shaped as a KubeRay RayCluster.

The worker groups come from the manifests ``kubectl apply -k`` uses: a kustomize overlay (rendered by
``k8s/kuberay/render.py``, as ``beamray k8s render`` does) or a rendered YAML file (``beamray k8s
render app.py``'s output). They go through the translation KubeRay's autoscaler sidecar runs on the
RayCluster (``ray_private.kuberay_autoscaling_config``), so each group becomes the node type the
autoscaler on Kubernetes would see: its CPU, memory and GPU count, its ``rayStartParams.resources``
(``accelerator_type:A10G``, ``RTX4090``: what ``gpus.gpu_resource`` asks for), ``minReplicas`` /
``maxReplicas``. Ray's autoscaler v2 (the manifests' ``autoscalerOptions.version``) then adds and
removes those nodes on Ray's fake multi-node provider (``simulate_provider``): each simulated node is a
raylet on this machine advertising the group's resources as logical resources, like ``cluster up --gpu``.

What differs from Kubernetes, on purpose:

* idle timeouts are the manifest's divided by ``IDLE_TIME_SCALE`` (300 s → 10 s), so that scale-down
  is seen in seconds;
* each simulated node's object store is ``OBJECT_STORE_BYTES`` (Ray's minimum is 75 MiB), not 30 % of
  the machine's memory per node;
* the head keeps its manifest shape (``num-cpus: "0"``: work goes to the worker groups), but runs on
  loopback with token auth, beamray's store, storage and registry, like any embedded head.

The groups the autoscaler may add (``maxReplicas`` > 0) are published under the internal KV key
``runtime.resources.SCALABLE_NODE_TYPES_KEY``, so a request only such a node fits is not rejected as
infeasible and one no group offers fails at once (``publish_node_types`` does the same for a real
KubeRay cluster: ``beamray cluster node-types MANIFEST`` with ``BEAMRAY_ADDRESS`` at its head).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from beamray import cluster, head, k8s, ray_private
from beamray.exceptions import ClusterError

IDLE_TIME_SCALE = 30.0
OBJECT_STORE_BYTES = 96 * 2**20
PROVIDER_CLASS = "beamray.simulate_provider.SimulatedNodeProvider"
HEAD_TYPE = "ray.head.default"  # the name Ray's fake provider tags its head with


@dataclass
class NodeGroup:
    """One simulated worker group: its node type's resources and replica bounds."""

    name: str
    resources: dict[str, float]
    min_replicas: int
    max_replicas: int
    idle_timeout_s: float


@dataclass
class Simulation:
    """What ``cluster up --simulate`` started (``--json`` prints it)."""

    source: str
    address: str
    dashboard_url: str
    head: dict[str, float]
    groups: list[NodeGroup] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_raycluster(path: Path) -> dict[str, Any]:
    """The one ``ray.io/v1`` RayCluster of a kustomize overlay folder or of a (multi-document) YAML file."""
    if path.is_dir():
        renderer = k8s.load_renderer(k8s.find_renderer(path))
        try:
            docs = renderer.render(path)
        except renderer.RenderError as exc:
            raise ClusterError(f"cannot render {path}: {exc}") from exc
    elif path.is_file():
        try:
            docs = [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]
        except yaml.YAMLError as exc:
            raise ClusterError(f"{path} is not valid YAML: {exc}") from exc
    else:
        raise ClusterError(f"{path} is neither a kustomize overlay folder nor a manifest file")
    clusters = [doc for doc in docs if isinstance(doc, dict) and doc.get("apiVersion") == "ray.io/v1"
                and doc.get("kind") == "RayCluster"]
    if len(clusters) != 1:
        raise ClusterError(f"{path} must hold exactly one ray.io/v1 RayCluster, found {len(clusters)}")
    return clusters[0]


def autoscaling_config(raycluster: dict[str, Any]) -> dict[str, Any]:
    """The RayCluster as KubeRay's autoscaler reads it, on the fake multi-node provider, idle times scaled."""
    rc = {**raycluster, "metadata": {"namespace": "default", **raycluster.get("metadata", {})}}
    try:
        derived = ray_private.kuberay_autoscaling_config(rc)
    except (KeyError, ValueError, AssertionError) as exc:
        raise ClusterError(f"the RayCluster's groups cannot be read as KubeRay's autoscaler reads them: "
                           f"{exc!r}") from exc
    _, head_id = ray_private.fake_multinode_provider()
    types = derived["available_node_types"]
    types[HEAD_TYPE] = types.pop(derived["head_node_type"])
    for name, node_type in types.items():
        if name != HEAD_TYPE:
            node_type["resources"]["object_store_memory"] = OBJECT_STORE_BYTES
        if "idle_timeout_s" in node_type:
            node_type["idle_timeout_s"] /= IDLE_TIME_SCALE
    derived.update(
        head_node_type=HEAD_TYPE,
        idle_timeout_minutes=derived["idle_timeout_minutes"] / IDLE_TIME_SCALE,
        provider={"type": "external", "module": PROVIDER_CLASS, "head_node_id": head_id, "launch_multiple": True,
                  "use_node_id_as_ip": True, "disable_node_updaters": True, "disable_launch_config_check": True},
    )
    return derived


def node_groups(config: dict[str, Any]) -> list[NodeGroup]:
    """The worker node types of an autoscaling config, as shown to the user."""
    default_idle = config["idle_timeout_minutes"] * 60
    return [NodeGroup(name, {k: v for k, v in t["resources"].items() if k != "object_store_memory"},
                      t["min_workers"], t["max_workers"], t.get("idle_timeout_s", default_idle))
            for name, t in config["available_node_types"].items() if name != config["head_node_type"]]


def publish_node_types(groups: list[NodeGroup]) -> None:
    """Tell the feasibility check which node shapes the autoscaler may add (groups with maxReplicas > 0)."""
    from beamray.runtime.resources import SCALABLE_NODE_TYPES_KEY

    cluster.connect()
    shapes = [group.resources for group in groups if group.max_replicas > 0]
    ray_private.InternalKV("beamray").put(SCALABLE_NODE_TYPES_KEY, json.dumps(shapes).encode())


def publish_manifest_node_types(manifest: Path) -> list[NodeGroup]:
    """``publish_node_types`` for the worker groups of a RayCluster manifest (a real KubeRay cluster's)."""
    groups = node_groups(autoscaling_config(read_raycluster(manifest)))
    publish_node_types(groups)
    return groups


def start(manifest: Path, wait_s: float = 120.0) -> Simulation:
    """Start the embedded head as ``manifest``'s RayCluster and wait for its groups' ``minReplicas`` nodes."""
    config = autoscaling_config(read_raycluster(manifest))
    head_resources = dict(config["available_node_types"][HEAD_TYPE]["resources"])
    if head.embedded_state():
        raise ClusterError("an embedded cluster is already running: `beamray cluster down` first, then "
                           "`beamray cluster up --simulate` shapes a new one")
    extra = {k: v for k, v in head_resources.items() if k not in ("CPU", "GPU", "memory")}
    state = head.start_embedded(num_cpus=head_resources.get("CPU", 0), num_gpus=head_resources.get("GPU"),
                                resources=extra or None, autoscaler=config,
                                memory_mib=head_resources["memory"] / 2**20 if "memory" in head_resources else None)
    groups = node_groups(config)
    publish_node_types(groups)
    _wait_for_nodes(1 + sum(group.min_replicas for group in groups), wait_s)
    return Simulation(str(manifest), state["address"], state["dashboard_url"], head_resources, groups)


def _wait_for_nodes(count: int, wait_s: float) -> None:
    import ray

    deadline = time.monotonic() + wait_s
    while sum(1 for node in ray.nodes() if node.get("Alive")) < count:
        if time.monotonic() > deadline:
            raise ClusterError(f"the simulated cluster did not reach its {count} minReplicas nodes in {wait_s:g} s "
                               "(see monitor.log in the head's Ray session logs)")
        time.sleep(0.5)
