"""The cluster's machines: every Ray node with its CPUs, memory and GPUs (type and count), totals and free.

Read from Ray's state API (``ray.util.state.list_nodes``) and the nodes' available resources; a GPU's type
comes from the node's ``accelerator_type:<T>`` resource (Ray's own, or the embedded cluster's emulation
``beamray cluster up --gpu A10G:2``) or a custom resource named after a Beam type (``gpus.beam_gpu_type``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from beamray.exceptions import ClusterError
from beamray.gpus import beam_gpu_type

MIB = 2**20


@dataclass
class Machine:
    """One node, as ``beamray machine list`` shows it (``--json`` prints these fields)."""

    node_id: str
    address: str
    state: str  # ALIVE | DEAD
    head: bool
    cpu_total: float
    cpu_free: float
    memory_total_mib: int
    memory_free_mib: int
    gpu_total: float
    gpu_free: float
    gpu_types: dict[str, float] = field(default_factory=dict)  # Beam GPU type → count on this node
    started_at: float | None = None


def connect_running() -> None:
    """Connect to the cluster when it runs; a stopped embedded cluster is reported, never started for a look."""
    from beamray import cluster

    if not cluster.info(with_resources=False).running:
        raise ClusterError("The cluster is not running. Start it with `beamray cluster up`.")
    cluster.connect()


def state_address() -> str | None:
    """The dashboard the state API reads (that of the cluster this process is connected to)."""
    from beamray import ray_private

    return ray_private.dashboard_url()


def gpu_types(resources: dict[str, float]) -> dict[str, float]:
    """``{Beam GPU type: count}`` from a node's (or a request's) resources; unknown ``accelerator_type:*`` kept."""
    found: dict[str, float] = {}
    for key, value in resources.items():
        gpu_type = beam_gpu_type(key) or (key.split(":", 1)[1] if key.startswith("accelerator_type:") else None)
        if gpu_type and value:
            found[gpu_type] = value
    return found


def _machine(node: Any, free: dict[str, float]) -> Machine:
    total = node.resources_total or {}
    alive = node.state == "ALIVE"
    types = gpu_types(total)
    gpus = total.get("GPU", 0.0)
    if len(types) == 1 and gpus:  # Ray marks a real node's type with 1 whatever its GPU count
        types = {gpu_type: gpus for gpu_type in types}
    return Machine(
        node_id=node.node_id, address=node.node_ip, state=node.state, head=bool(node.is_head_node),
        cpu_total=total.get("CPU", 0.0), cpu_free=free.get("CPU", 0.0) if alive else 0.0,
        memory_total_mib=int(total.get("memory", 0) // MIB),
        memory_free_mib=int(free.get("memory", 0) // MIB) if alive else 0,
        gpu_total=gpus, gpu_free=free.get("GPU", 0.0) if alive else 0.0, gpu_types=types,
        started_at=node.start_time_ms / 1000 if node.start_time_ms else None,
    )


def list_machines() -> list[Machine]:
    """Every node the cluster knows (the head first, dead nodes last)."""
    from ray.util.state import list_nodes

    from beamray import ray_private

    connect_running()
    nodes = list_nodes(address=state_address(), detail=True, limit=10_000, raise_on_missing_output=False)
    free = ray_private.available_resources_per_node()
    machines = [_machine(node, free.get(node.node_id, {})) for node in nodes]
    return sorted(machines, key=lambda m: (m.state != "ALIVE", not m.head, m.address, m.node_id))


def node_addresses() -> dict[str, str]:
    """Node id → its IP address, for every node the cluster knows."""
    from ray.util.state import list_nodes

    nodes = list_nodes(address=state_address(), limit=10_000, raise_on_missing_output=False)
    return {node.node_id: node.node_ip for node in nodes}
