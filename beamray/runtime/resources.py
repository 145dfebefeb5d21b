"""ResourceSpec → Ray scheduling options, GPU priority lists, and the fail-fast feasibility check.

Ray leaves a request that no node can satisfy pending forever; beamray checks every request against
the nodes (plus node types an autoscaler may add, published under ``SCALABLE_NODE_TYPES_KEY``) and
raises ``InfeasibleResourcesError`` instead.
"""

from __future__ import annotations

import json
import time
from typing import Any

import ray

from beamray import ray_private
from beamray.gpus import gpu_resource
from beamray.exceptions import InfeasibleResourcesError
from beamray.specs import ResourceSpec

ACCELERATOR_MARK = 0.001  # what Ray's own ``accelerator_type=`` option asks for
SCALABLE_NODE_TYPES_KEY = "beamray/scalable_node_types"
_NODES_TTL_S = 5.0


def ray_options(resources: ResourceSpec, gpu_type: str | None) -> dict[str, Any]:
    """Ray's ``num_cpus`` / ``memory`` / ``num_gpus`` / ``resources`` for one chosen GPU type (or none)."""
    if not isinstance(resources.memory_mib, (int, float)) or resources.memory_mib < 0:
        raise ValueError(f"memory must be a non-negative number of MiB, got {resources.memory_mib!r}")
    options: dict[str, Any] = {"num_cpus": resources.cpu, "memory": int(resources.memory_mib * 2**20)}
    if resources.gpu_count:
        options["num_gpus"] = resources.gpu_count
    if gpu_type and gpu_type != "any":
        options["resources"] = {gpu_resource(gpu_type): ACCELERATOR_MARK}
    return options


def requested(options: dict[str, Any]) -> dict[str, float]:
    """The flat resource bundle Ray will look for on one node."""
    bundle = {"CPU": float(options.get("num_cpus", 0)), "memory": float(options.get("memory", 0))}
    if options.get("num_gpus"):
        bundle["GPU"] = float(options["num_gpus"])
    bundle.update(options.get("resources", {}))
    return {key: value for key, value in bundle.items() if value}


def _fits(bundle: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(key, 0.0) >= value for key, value in bundle.items())


class _NodeView:
    """Alive nodes' total and available resources, refreshed at most every few seconds."""

    def __init__(self) -> None:
        self._at = 0.0
        self.totals: list[dict[str, float]] = []
        self.scalable: list[dict[str, float]] = []

    def refresh(self, force: bool = False) -> None:
        if not force and time.monotonic() - self._at < _NODES_TTL_S:
            return
        self.totals = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
        raw = ray_private.InternalKV("beamray").get(SCALABLE_NODE_TYPES_KEY)
        self.scalable = json.loads(raw) if raw else []
        self._at = time.monotonic()

    def feasible(self, bundle: dict[str, float]) -> bool:
        return any(_fits(bundle, node) for node in self.totals + self.scalable)


_nodes = _NodeView()


def check_feasible(options: dict[str, Any], what: str) -> None:
    """Raise ``InfeasibleResourcesError`` when no node (now or scalable) can ever run ``options``."""
    bundle = requested(options)
    _nodes.refresh()
    if not _nodes.feasible(bundle):
        _nodes.refresh(force=True)  # a node may have joined since the last look
        if not _nodes.feasible(bundle):
            raise InfeasibleResourcesError(what, bundle, _nodes.totals + _nodes.scalable)


def cluster_cpus() -> float:
    """CPUs of the alive nodes (as of the last look, at most a few seconds old)."""
    _nodes.refresh()
    return sum(node.get("CPU", 0.0) for node in _nodes.totals)


def choose_gpu(resources: ResourceSpec, what: str) -> str | None:
    """The first GPU type of the priority list the cluster can serve now; else the first it can serve at all."""
    if not resources.gpu:
        return None
    if len(resources.gpu) == 1:
        return resources.gpu[0]
    available = ray.available_resources()
    for gpu_type in resources.gpu:
        if _fits(requested(ray_options(resources, gpu_type)), available):
            return gpu_type
    _nodes.refresh(force=True)
    for gpu_type in resources.gpu:
        if _nodes.feasible(requested(ray_options(resources, gpu_type))):
            return gpu_type
    raise InfeasibleResourcesError(
        f"{what} (gpu priority list {', '.join(resources.gpu)})",
        requested(ray_options(resources, resources.gpu[0])),
        _nodes.totals + _nodes.scalable,
    )


def resolve(resources: ResourceSpec, what: str) -> dict[str, Any]:
    """Ray options for ``resources``, GPU type chosen and feasibility checked."""
    options = ray_options(resources, choose_gpu(resources, what))
    check_feasible(options, what)
    return options
