"""Talking to the task service from anywhere connected to the cluster: drivers, the gateway, the CLI."""

from __future__ import annotations

import json
import time
from typing import Any, Callable

import ray

from beamray import cluster
from beamray.exceptions import BeamrayError
from beamray.tasks import records
from beamray.tasks.service import SERVICE_NAME, QueueFullError, TaskService


class TaskQueueFullError(BeamrayError):
    """A task queue holds ``max_pending_tasks`` already."""


class TaskNotFoundError(BeamrayError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def service() -> Any:
    """The detached task service actor, created on first use with the stores this driver uses."""
    cluster.connect()
    try:
        return ray.get_actor(SERVICE_NAME, namespace=cluster.NAMESPACE)
    except ValueError:
        from beamray.serve_bridge.deployments import base_runtime_env

        return TaskService.options(name=SERVICE_NAME, namespace=cluster.NAMESPACE, lifetime="detached",
                                   get_if_exists=True, runtime_env=base_runtime_env(None)).remote()


def submit(queue_id: str, args: Any, kwargs: dict[str, Any]) -> str:
    try:
        return ray.get(service().submit.remote(queue_id, list(args), dict(kwargs)))
    except ray.exceptions.RayTaskError as exc:
        if isinstance(exc.cause, QueueFullError):
            raise TaskQueueFullError(str(exc.cause)) from None
        raise


def put(spec: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> "Task":
    """Enqueue on the latest running version of ``spec.name``; deploy it first when none runs."""
    from beamray.registry import Registry
    from beamray.serve_bridge import deployments

    json.dumps({"args": args, "kwargs": kwargs})  # Beam sends JSON: non-JSON arguments fail here, as there
    cluster.connect()
    record = Registry().latest(spec.name, kind="taskqueue") or deployments.deploy(spec)
    task_id = submit(record.app_name, args, kwargs)
    print(f"Enqueued task: {task_id}")
    return Task(task_id)


def get(task_id: str) -> dict[str, Any]:
    found = ray.get(service().get.remote(task_id))
    if found is None:
        raise TaskNotFoundError(f"task {task_id} not found")
    return found


def list_tasks(status: list[str] | None = None, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
    return ray.get(service().list.remote(status, name, limit))


def cancel(task_ids: list[str]) -> list[str]:
    return ray.get(service().cancel.remote(list(task_ids)))


class Task:
    """Beam's Task: ``status()``, ``result(wait=False)``, ``outputs()``, ``is_complete()``, ``subscribe()``."""

    def __init__(self, id: str, url: str = "", token: str = "") -> None:
        self.id = id
        self.url = url
        self.token = token
        self._data = get(id)

    def _refresh(self) -> dict[str, Any]:
        self._data = get(self.id)
        return self._data

    def status(self) -> str:
        return self._refresh()["status"]

    def is_complete(self) -> bool:
        return self._data["status"] in records.TERMINAL

    def result(self, wait: bool = False) -> Any:
        if wait:
            return self.subscribe()
        return records.decode_result(self._refresh()["result"])

    def outputs(self) -> list[dict[str, Any]]:
        return self._data["outputs"]

    def subscribe(self, event_handler: Callable[[dict[str, Any]], None] | None = None) -> Any:
        """Block until the task ends, calling ``event_handler`` on each status change; returns the result."""
        last = None
        try:
            while True:
                data = self._refresh()
                if data["status"] != last:
                    last = data["status"]
                    if event_handler:
                        event_handler(data)
                if data["status"] in records.TERMINAL:
                    return records.decode_result(data["result"])
                time.sleep(0.1)
        except Exception as exc:  # the SDK returns errors instead of raising them
            return {"error": str(exc)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, status={self._data['status']!r})"
