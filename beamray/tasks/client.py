"""Talking to the task service: directly from anywhere connected to the cluster (drivers, the gateway,
the CLI), or through the gateway's HTTP task API from any machine that reaches it (Beam's ``Task`` with a
``url``, and ``beam.Client``)."""

from __future__ import annotations

import contextlib
import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any, Callable

import ray

from beamray import cluster
from beamray.exceptions import BeamrayError
from beamray.tasks import records
from beamray.tasks.config import QueueConfig
from beamray.tasks.service import SERVICE_NAME, TaskService


class TaskNotFoundError(BeamrayError, KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


class GatewayError(BeamrayError):
    """The gateway refused a request or could not be reached; ``status`` is its HTTP status (0: unreachable)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


def gateway_request(method: str, url: str, token: str, body: bytes | None = None, timeout: float = 60,
                    content_type: str = "application/json") -> Any:
    """One request to the gateway with the bearer token; the open response (the caller reads and closes it).

    401 and unreachable gateways become one clear ``GatewayError``; other statuses keep their body's message.
    """
    headers = {"Authorization": f"Bearer {token}", "Content-Type": content_type}
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        return urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        detail = exc.read().decode("utf-8", "replace")
        with contextlib.suppress(ValueError, AttributeError):
            detail = json.loads(detail).get("error") or detail
        if exc.code == 401:
            raise GatewayError(f"the gateway at {url.split('/', 3)[:3][-1]} refused the token (401 Unauthorized); "
                               "pass Client(token=...) the token `beamray config show` prints, or set "
                               "BEAM_TOKEN", 401) from None
        raise GatewayError(f"{method} {url} answered {exc.code}: {detail}", exc.code) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise GatewayError(f"cannot reach the gateway at {url} ({reason}); check BEAMRAY_GATEWAY_URL or "
                           "`beamray cluster status`") from None


def gateway_json(method: str, url: str, token: str, payload: Any = None) -> Any:
    """``gateway_request`` with a JSON body and a JSON answer."""
    body = None if payload is None else json.dumps(payload).encode()
    with gateway_request(method, url, token, body) as response:
        return json.loads(response.read() or b"null")


def _gateway_events(url: str, token: str) -> Any:
    """The ``data`` of each server-sent event at ``url`` (the task API's ``…/subscribe``), as JSON."""
    with gateway_request("GET", url, token, timeout=None) as response:
        for raw in response:
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("data:"):
                yield json.loads(line[len("data:"):])


def service() -> Any:
    """The detached task service actor, created on first use with the stores this driver uses."""
    cluster.connect()
    try:
        return ray.get_actor(SERVICE_NAME, namespace=cluster.NAMESPACE)
    except ValueError:
        return TaskService.options(name=SERVICE_NAME, namespace=cluster.NAMESPACE, lifetime="detached",
                                   get_if_exists=True, runtime_env=cluster.actor_runtime_env()).remote()


# Ray records where each call's output starts and ends in an actor's log only when asked: with it,
# ``beamray logs --task-id`` (and the dashboard) show one task's lines, after it ended too.
_TASK_LOG_OFFSETS = {"RAY_ENABLE_RECORD_ACTOR_TASK_LOGGING": "1"}


def register_queue(config: QueueConfig, spec_blob: bytes) -> None:
    """Start (or replace) a queue version in the task service; its workers record per-task log offsets."""
    config.runtime_env = {**config.runtime_env,
                          "env_vars": {**config.runtime_env.get("env_vars", {}), **_TASK_LOG_OFFSETS}}
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
    """Beam's Task: ``status()``, ``result(wait=False)``, ``outputs()``, ``is_complete()``, ``subscribe()``.

    With ``url`` (the gateway, as ``beam.Client`` makes them) it reads the task API over HTTP with
    ``token``; without, it asks the task service directly (``.put()`` in a driver or a worker).
    """

    def __init__(self, id: str, url: str = "", token: str = "") -> None:
        self.id = id
        self.url = url.rstrip("/")
        self.token = token
        self._data = self._refresh()

    def _refresh(self) -> dict[str, Any]:
        if not self.url:
            self._data = get(self.id)
            return self._data
        try:
            self._data = gateway_json("GET", f"{self.url}/v2/task/{self.id}/", self.token)
        except GatewayError as exc:
            if exc.status == 404:
                raise TaskNotFoundError(f"task {self.id} not found") from None
            raise
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
        try:
            events = _gateway_events(f"{self.url}/v2/task/{self.id}/subscribe", self.token) if self.url \
                else self._polled()
            for event in events:
                self._data = {**self._data, **event}
                if event_handler:
                    event_handler(event)
                if event["status"] in records.TERMINAL:
                    return records.decode_result(event["result"])
            raise GatewayError(f"the subscription to task {self.id} ended before the task did")
        except Exception as exc:  # the SDK returns errors instead of raising them
            return {"error": str(exc)}

    def _polled(self) -> Any:
        """The task's record at each status change, straight from the service."""
        last, pause = None, 0.05
        while True:
            data = self._refresh()
            if data["status"] != last:
                last = data["status"]
                yield data
            time.sleep(pause)
            pause = min(0.5, pause * 1.5)  # quick for short tasks, light on the service for long ones

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Task) and other.id == self.id

    def __repr__(self) -> str:
        return f"Task(id={self.id!r}, status={self._data['status']!r})"
