"""Every running Beam container of the cluster, by its Beam container id: list, find, stop, exec.

A container is whatever runs one deployment's code in a process of its own, found through Ray's state API
(``ray.util.state``) and beamray's records (the deployment registry), never the dashboard's pages:

=============  ============================================  ==================================================
kind           Ray object                                    container id (= ``CONTAINER_ID`` inside)
=============  ============================================  ==================================================
endpoint,      Serve replica actor ``ServeReplica:<app>:…``  ``<kind>-<stub_id[:8]>-<replica suffix>``, the
asgi,          named ``SERVE_REPLICA::<app>#<dep>#<suffix>``  suffix Serve gave the replica
realtime
taskqueue,     ``TaskWorker`` actors (``workers`` of them    ``<kind>-<stub_id[:8]>-<8 hex>``, their ``repr``
function,      share one container)
schedule
pod, sandbox,  any named actor of class ``*Container`` in    its actor name; ``describe()`` says the rest
…              beamray's namespace with ``describe()``
function call  a running Ray task of a beamray function      ``function-<stub_id[:8]>-<worker_id[:8]>``
=============  ============================================  ==================================================

``stop`` ends one container the way its kind's autoscaling expects: a replica is killed and Serve starts
a replacement; a task-queue container is stopped by the task service (its running task is retried, the pool
starts new workers when there is work); a container actor is asked to ``terminate()`` first.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from beamray import machines
from beamray.exceptions import BeamrayError

SERVE_NAMESPACE = "serve"
_REPLICA_CLASS = "ServeReplica"
_TASK_WORKER_CLASS = "TaskWorker"
# The Ray functions behind @function calls and .map chunks (runtime/functions.py).
_FUNCTION_TASKS = ("beamray_function", "beamray_map_chunk")
_DESCRIBE_TIMEOUT_S = 5.0
_ACTOR_STATUS = {"ALIVE": "RUNNING", "PENDING_CREATION": "PENDING", "DEPENDENCIES_UNREADY": "PENDING",
                 "RESTARTING": "RESTARTING"}


class ContainerNotFoundError(BeamrayError, KeyError):
    """No running container has that id."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass
class Container:
    """One running container, as ``beamray container list`` shows it (``--json`` prints these fields)."""

    container_id: str
    kind: str  # endpoint | asgi | realtime | taskqueue | function | schedule | pod | sandbox | …
    deployment: str  # the deployment's name ("" for a function called from a script)
    version: int  # the deployment's version (0 when it has none)
    deployment_id: str
    stub_id: str
    status: str  # RUNNING | PENDING | RESTARTING, or what the container actor reports
    started_at: float | None  # Unix time its process (or, for a function call, its task) started
    node_id: str
    node_address: str
    pid: int | None
    cpu: float
    memory_mib: float
    gpu: float
    gpu_type: str
    ray_actor_ids: list[str] = field(default_factory=list)  # the Ray actors behind it (none: a function call)
    ray_actor_name: str = ""  # the named actor (Serve replicas, container actors)
    ray_namespace: str = ""
    ray_task_id: str = ""  # a function call's running Ray task
    task_id: str = ""  # the Beam task it runs now (task queues, function calls)
    exit_code: int | None = None  # container actors whose process ended (a crashed pod's entrypoint)


# --------------------------------------------------------------------------------------------------
# reading the cluster


@dataclass
class _Snapshot:
    """One look at the cluster: alive actors, running tasks, worker start times, nodes, records."""

    actors: list[Any]
    tasks: list[Any]
    started: dict[tuple[str, int], float]  # (node id, pid) → when that worker process started
    nodes: dict[str, str]
    records: list[Any]

    @classmethod
    def take(cls) -> "_Snapshot":
        from ray.util.state import list_actors, list_tasks, list_workers

        from beamray.registry import Registry

        machines.connect_running()
        address = machines.state_address()
        common = {"address": address, "limit": 10_000, "raise_on_missing_output": False}
        actors = list_actors(detail=True, filters=[("state", "!=", "DEAD")], **common)
        tasks = list_tasks(detail=True, filters=[("state", "=", "RUNNING")], **common)
        workers = list_workers(detail=True, filters=[("is_alive", "=", "True")], **common)
        started = {(w.node_id, w.pid): (w.start_time_ms or w.worker_launched_time_ms) / 1000 for w in workers
                   if w.start_time_ms or w.worker_launched_time_ms}
        return cls(actors, tasks, started, machines.node_addresses(), Registry().records())

    def record_for_app(self, app_name: str) -> Any:
        return next((r for r in self.records if r.app_name == app_name), None)

    def record_for_container(self, container_id: str) -> Any:
        """The record a ``<kind>-<stub8>-<suffix>`` id names (the newest version when two stubs share 8 hex)."""
        kind, _, rest = container_id.partition("-")
        stub8 = rest.split("-", 1)[0]
        found = [r for r in self.records if r.kind == kind and r.stub_id.startswith(stub8)]
        return found[-1] if found else None


def _resources(required: dict[str, float]) -> dict[str, Any]:
    gpu_types = machines.gpu_types(required)
    return {"cpu": required.get("CPU", 0.0), "memory_mib": required.get("memory", 0.0) / machines.MIB,
            "gpu": required.get("GPU", 0.0), "gpu_type": ",".join(gpu_types)}


def _from_actor(snapshot: _Snapshot, actor: Any, container_id: str, record: Any, kind: str) -> Container:
    return Container(
        container_id=container_id, kind=kind, deployment=record.name if record else "",
        version=record.version if record else 0, deployment_id=record.deployment_id if record else "",
        stub_id=record.stub_id if record else "", status=_ACTOR_STATUS.get(actor.state, actor.state),
        started_at=snapshot.started.get((actor.node_id, actor.pid)), node_id=actor.node_id or "",
        node_address=snapshot.nodes.get(actor.node_id or "", ""), pid=actor.pid or None,
        ray_actor_ids=[actor.actor_id], ray_actor_name=actor.name or "", ray_namespace=actor.ray_namespace or "",
        **_resources(actor.required_resources or {}),
    )


def _replica(snapshot: _Snapshot, actor: Any) -> Container | None:
    """A Serve replica of a beamray web deployment (the gateway and other apps are not containers)."""
    parts = (actor.class_name or "").split(":")
    record = snapshot.record_for_app(parts[1]) if len(parts) == 3 else None
    if record is None or not actor.name:
        return None
    suffix = actor.name.rsplit("#", 1)[-1]
    return _from_actor(snapshot, actor, f"{record.kind}-{record.stub_id[:8]}-{suffix}", record, record.kind)


def _task_worker(snapshot: _Snapshot, actor: Any) -> Container | None:
    """A task-queue worker; its ``repr`` is its container id once it has started (none while pending)."""
    container_id = actor.repr_name or ""
    if not container_id:
        return None
    record = snapshot.record_for_container(container_id)
    return _from_actor(snapshot, actor, container_id, record, container_id.partition("-")[0])


def _container_actors(snapshot: _Snapshot) -> list[Container]:
    """Named ``*Container`` actors in beamray's namespace (pods, sandboxes), each as its ``describe()`` says."""
    from beamray import cluster

    found = [a for a in snapshot.actors if a.ray_namespace == cluster.NAMESPACE and a.name
             and (a.class_name or "").endswith("Container") and a.state == "ALIVE"]
    calls = {}
    for actor in found:
        try:
            calls[actor.actor_id] = ray.get_actor(actor.name, namespace=cluster.NAMESPACE).describe.remote()
        except ValueError:  # ended since the snapshot
            continue
    containers = []
    for actor in found:
        try:
            info = ray.get(calls[actor.actor_id], timeout=_DESCRIBE_TIMEOUT_S) if actor.actor_id in calls else None
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            info = None
        if info is None:
            continue
        record = next((r for r in snapshot.records if info.get("deployment_id") and
                       r.deployment_id == info["deployment_id"]), None)
        container = _from_actor(snapshot, actor, info.get("container_id") or actor.name, record,
                                info.get("kind") or actor.class_name.removesuffix("Container").lower())
        container.deployment = info.get("deployment") or container.deployment
        container.version = info.get("version") or container.version
        container.stub_id = info.get("stub_id") or container.stub_id
        container.status = info.get("status") or container.status
        container.started_at = info.get("started_at") or container.started_at
        container.exit_code = info.get("exit_code")
        containers.append(container)
    return containers


def _function_stub(task: Any) -> str:
    """A call's stub id, which its Ray function's name carries (``beamray_function:<stub>``)."""
    return (task.func_or_class_name or "").rpartition(".")[2].partition(":")[2]


def _function_calls(snapshot: _Snapshot) -> list[Container]:
    """Running Ray tasks of beamray functions (``.remote()`` calls, ``.map()`` chunks): one container each."""
    containers = []
    for task in snapshot.tasks:
        if task.type != "NORMAL_TASK" or not (task.func_or_class_name or "").startswith(_FUNCTION_TASKS):
            continue
        stub = _function_stub(task)
        containers.append(Container(
            container_id=f"function-{stub[:8] or 'unknown'}-{(task.worker_id or '')[:8]}", kind="function",
            deployment="",
            version=0, deployment_id="", stub_id=stub, status="RUNNING",
            started_at=task.start_time_ms / 1000 if task.start_time_ms else None, node_id=task.node_id or "",
            node_address=snapshot.nodes.get(task.node_id or "", ""), pid=task.worker_pid or None,
            ray_task_id=task.task_id, task_id=task.task_id, **_resources(task.required_resources or {}),
        ))
    return containers


def _merge_workers(containers: list[Container]) -> list[Container]:
    """A task-queue container of ``workers`` > 1 is several actors under one id: one row, resources summed."""
    merged: dict[str, Container] = {}
    for container in containers:
        first = merged.get(container.container_id)
        if first is None:
            merged[container.container_id] = container
            continue
        first.ray_actor_ids += container.ray_actor_ids
        first.cpu, first.memory_mib, first.gpu = (first.cpu + container.cpu, first.memory_mib + container.memory_mib,
                                                  first.gpu + container.gpu)
    return list(merged.values())


def _running_beam_tasks(snapshot: _Snapshot, containers: list[Container]) -> None:
    """Fill in the Beam task each task-queue container runs now (its Ray call is named ``… task=<id>``)."""
    by_actor = {actor_id: c for c in containers for actor_id in c.ray_actor_ids}
    for task in snapshot.tasks:
        container = by_actor.get(task.actor_id or "")
        if container is not None and task.type == "ACTOR_TASK" and " task=" in (task.name or ""):
            container.task_id = task.name.rsplit(" task=", 1)[1]


def list_containers() -> list[Container]:
    """Every running container of the cluster, oldest first."""
    snapshot = _Snapshot.take()
    found: list[Container] = []
    for actor in snapshot.actors:
        if actor.ray_namespace == SERVE_NAMESPACE and (actor.class_name or "").startswith(_REPLICA_CLASS + ":"):
            container = _replica(snapshot, actor)
        elif actor.class_name == _TASK_WORKER_CLASS:
            container = _task_worker(snapshot, actor)
        else:
            continue
        if container is not None:
            found.append(container)
    found = _merge_workers(found)
    _running_beam_tasks(snapshot, found)
    found += _container_actors(snapshot) + _function_calls(snapshot)
    return sorted(found, key=lambda c: (c.started_at or time.time(), c.container_id))


def find(container_id: str) -> Container:
    """The running container ``container_id`` names; ``ContainerNotFoundError`` (with the next step) if none."""
    containers = list_containers()
    for container in containers:
        if container.container_id == container_id:
            return container
    prefixed = [c for c in containers if len(container_id) >= 6 and c.container_id.startswith(container_id)]
    if len(prefixed) == 1:
        return prefixed[0]
    worker = container_id.rpartition("-")[2]  # a named @function's CONTAINER_ID: its worker part decides
    calls = [c for c in containers if container_id.startswith("function-") and c.ray_task_id
             and c.container_id.endswith(f"-{worker}")]
    if len(calls) == 1:
        return calls[0]
    shown = ", ".join(c.container_id for c in containers[:5]) or "none runs now"
    raise ContainerNotFoundError(f"No running container has the id {container_id!r} (running: {shown}). "
                                 "See them all with `beamray container list`.")


# --------------------------------------------------------------------------------------------------
# stopping


def stop(container_id: str) -> Container:
    """End one container; its deployment's autoscaling replaces it as Beam's does. The container it was."""
    container = find(container_id)
    if container.ray_task_id:  # a function call: its worker process ends, Ray retries the call (``retries``)
        ray.get(on_node(_end_process, container.node_id).remote(container.pid))
    elif container.ray_namespace == SERVE_NAMESPACE:
        _kill_named(container.ray_actor_name, SERVE_NAMESPACE)  # Serve starts a replacement replica
    elif container.ray_actor_name:
        _terminate_named(container.ray_actor_name, container.ray_namespace)
    else:
        from beamray.tasks import client

        ray.get(client.service().stop_container.remote(container.container_id), timeout=60)
    return container


def _end_process(pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def _kill_named(name: str, namespace: str) -> None:
    try:
        ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
    except ValueError:  # gone meanwhile: stopped all the same
        pass


def _terminate_named(name: str, namespace: str) -> None:
    """Ask a container actor to end its process (``terminate()``), then end the actor."""
    try:
        actor = ray.get_actor(name, namespace=namespace)
    except ValueError:
        return
    if hasattr(actor, "terminate"):
        try:
            ray.get(actor.terminate.remote(), timeout=30)
        except (ray.exceptions.RayError, ray.exceptions.GetTimeoutError):
            pass
    ray.kill(actor, no_restart=True)


def runtime_env(container: Container) -> dict[str, Any]:
    """The Ray runtime env the container runs with (its code's ``working_dir``, image packages, env vars)."""
    from ray.util.state import get_actor, get_task

    address = machines.state_address()
    if container.ray_actor_ids:
        state = get_actor(container.ray_actor_ids[0], address=address)
        serialized = state.serialized_runtime_env if state else ""
    else:
        states = get_task(container.ray_task_id, address=address)
        task = states[0] if isinstance(states, list) and states else states
        serialized = ((task.runtime_env_info or {}).get("serialized_runtime_env") if task else "") or ""
    found = json.loads(serialized) if serialized else {}
    return {key: value for key, value in found.items() if not key.startswith("_")}


def on_node(function: Any, node_id: str, runtime_env: dict[str, Any] | None = None, **options: Any) -> Any:
    """``function`` as a Ray task pinned to ``node_id``, needing no CPU (it runs beside a full container)."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    return ray.remote(function).options(
        num_cpus=0, max_retries=0, runtime_env=runtime_env or None,
        scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False), **options)
