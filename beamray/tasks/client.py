"""Talking to the task service from anywhere connected to the cluster: drivers, the gateway, the CLI."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import ray

from beamray import cluster, locations
from beamray.exceptions import BeamrayError
from beamray.tasks import records
from beamray.tasks.config import QueueConfig
from beamray.tasks.service import SERVICE_NAME, TaskService


class TaskNotFoundError(BeamrayError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def service() -> Any:
    """The detached task service actor, created on first use with the stores this driver uses."""
    cluster.connect()
    try:
        return ray.get_actor(SERVICE_NAME, namespace=cluster.NAMESPACE)
    except ValueError:
        return TaskService.options(name=SERVICE_NAME, namespace=cluster.NAMESPACE, lifetime="detached",
                                   get_if_exists=True, runtime_env=locations.actor_runtime_env()).remote()


def register_queue(config: QueueConfig, spec_blob: bytes) -> None:
    """Start (or replace) a queue version in the task service."""
    ray.get(service().register_queue.remote(config, spec_blob))


def unregister_queue(queue_id: str) -> None:
    """Stop a queue version; its tasks that have not started expire."""
    ray.get(service().unregister_queue.remote(queue_id))


@dataclass
class _Enqueue:
    queue_id: str
    item: tuple[list[Any], dict[str, Any], str]
    done: threading.Event = field(default_factory=threading.Event)
    outcome: Any = None  # a task id, an exception, or _LEAD


_LEAD = object()  # "send the next batch yourself"


class _Enqueuer:
    """Concurrent enqueues from one process share service calls (as a database's group commit does).

    The first caller sends its item; callers arriving meanwhile wait, and the first of them then sends all
    of theirs in one ``submit_many``. A lone caller pays one call, as before; many threads calling
    ``.put()`` at once pay one call per batch instead of one per task.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiting: list[_Enqueue] = []
        self._sending = False

    def submit(self, queue_id: str, args: list[Any], kwargs: dict[str, Any]) -> str:
        # The caller holds the cluster (trusted): a callback_url kwarg is also where Beam's callback goes.
        callback_url = kwargs.get("callback_url")
        mine = _Enqueue(queue_id, (args, kwargs, callback_url if isinstance(callback_url, str) else ""))
        with self._lock:
            self._waiting.append(mine)
            lead = not self._sending
            self._sending = True
        if not lead:
            mine.done.wait()
        if lead or mine.outcome is _LEAD:
            with self._lock:
                batch, self._waiting = self._waiting, []
            self._send(batch)
            with self._lock:
                if self._waiting:
                    self._waiting[0].outcome = _LEAD
                    self._waiting[0].done.set()
                else:
                    self._sending = False
        if isinstance(mine.outcome, BaseException):
            raise mine.outcome
        return mine.outcome

    @staticmethod
    def _send(batch: list[_Enqueue]) -> None:
        """One ``submit_many`` per queue; every entry gets its outcome, whatever fails."""
        by_queue: dict[str, list[_Enqueue]] = {}
        for entry in batch:
            by_queue.setdefault(entry.queue_id, []).append(entry)
        for queue_id, entries in by_queue.items():
            try:
                outcomes = ray.get(service().submit_many.remote(queue_id, [entry.item for entry in entries]))
            except Exception as exc:  # the whole call failed (queue not running, service unreachable)
                outcomes = [exc] * len(entries)
            for entry, outcome in zip(entries, outcomes):
                entry.outcome = outcome
                entry.done.set()


_enqueuer = _Enqueuer()


def submit(queue_id: str, args: Any, kwargs: dict[str, Any]) -> str:
    """Enqueue one task; concurrent calls from threads of this process are sent together."""
    return _enqueuer.submit(queue_id, list(args), dict(kwargs))


def check_arguments(args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    """Beam sends a task's arguments as JSON: anything else fails here (a TypeError), as there."""
    json.dumps({"args": args, "kwargs": kwargs})


def put(queue_id: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> "Task":
    """Enqueue on queue version ``queue_id`` as Beam's ``.put()`` does, printing the task's id; the caller
    checked the arguments (``check_arguments``) before it looked the queue up or deployed one."""
    task_id = submit(queue_id, args, kwargs)
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
        last, pause = None, 0.05
        try:
            while True:
                data = self._refresh()
                if data["status"] != last:
                    last = data["status"]
                    if event_handler:
                        event_handler(data)
                if data["status"] in records.TERMINAL:
                    return records.decode_result(data["result"])
                time.sleep(pause)
                pause = min(0.5, pause * 1.5)  # quick for short tasks, light on the service for long ones
        except Exception as exc:  # the SDK returns errors instead of raising them
            return {"error": str(exc)}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, status={self._data['status']!r})"
