"""The task service: one detached async actor that owns every task queue's pending work.

It keeps task records in the durable store (write-through; it is their only writer), runs each queue's
tasks as Ray tasks with the queue's resources and code, and turns outcomes into Beam's statuses:
an exception in ``retry_for`` or a crashed worker → RETRY (up to ``retries``), any other exception →
FAILED, past ``timeout`` → TIMEOUT (the worker process is killed), cancelled → CANCELLED, never started
within the TTL → EXPIRED. On (re)start it reloads every record: RUNNING tasks of a dead service are
retried, PENDING ones run. A task is marked COMPLETE at most once.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import concurrent.futures
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import RayError, TaskCancelledError

from beamray.store import open_store
from beamray.tasks import records
from beamray.tasks.records import TaskRecord
from beamray.tasks.worker import run_queued_task

SERVICE_NAME = "beamray-task-service"
DEFAULT_TTL_S = 7200.0
_TASKS, _QUEUES = "tasks/", "taskqueues/"


class QueueFullError(Exception):
    """The queue already holds ``max_pending_tasks`` tasks (HTTP 429)."""


@dataclass
class _Queue:
    config: dict[str, Any]
    spec_ref: Any
    launcher: Any = None  # the task body with this queue's resources and code applied, built once
    pending: collections.deque = field(default_factory=collections.deque)
    running: dict[str, Any] = field(default_factory=dict)  # task id → ObjectRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.Task | None = None

    def capacity(self) -> int:
        """Beam's QueueDepthAutoscaler: one container per ``tasks_per_container`` queued, ``workers`` each."""
        config = self.config
        wanted = math.ceil((len(self.pending) + len(self.running)) / config["tasks_per_container"])
        containers = max(config["min_containers"], min(config["max_containers"], wanted))
        return containers * config["workers"]


def _outputs(task_id: str) -> list[dict[str, Any]]:
    """The task's saved Outputs with fresh signed URLs (Beam's task API ``outputs``)."""
    from beamray.adapters import output

    return output.outputs_for_task(task_id)


class _Ticks:
    """A schedule's firing times; missed ticks are skipped, as cron does after downtime."""

    def __init__(self, when: str) -> None:
        self.when = when
        self.next = self._after(time.time())

    def _after(self, moment: float) -> float:
        from croniter import croniter

        return croniter(self.when, moment).get_next(float)

    def due(self) -> bool:
        now = time.time()
        if now < self.next:
            return False
        self.next = self._after(now)
        return True

    def wait(self, longest: float) -> float:
        return max(0.01, min(longest, self.next - time.time()))


def _code_present(config: dict[str, Any]) -> bool:
    """After a cluster restart the uploaded code is gone from the GCS until the queue is registered again."""
    from ray._private.runtime_env import packaging

    uri = config["runtime_env"].get("working_dir")
    return uri is None or packaging.package_exists(uri)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class TaskService:
    def __init__(self) -> None:
        self.store = open_store()
        self.tasks: dict[str, TaskRecord] = {}
        self.queues: dict[str, _Queue] = {}
        self._callbacks = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="beamray-callback")
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._started:
            return
        self._started = True
        for raw in self.store.scan(_TASKS).values():
            record = TaskRecord.from_json(raw)
            self.tasks[record.id] = record
        for key, raw in self.store.scan(_QUEUES).items():
            if key.endswith("/config"):
                import json

                config = json.loads(raw)
                blob = self.store.get(f"{_QUEUES}{config['queue']}/spec")
                if blob is not None and _code_present(config):
                    self._activate(config, blob)  # else a restore will register it again with fresh code
        for record in sorted(self.tasks.values(), key=lambda r: r.created_at):
            if record.status == records.RUNNING:  # its worker died with the previous service
                self._retry_or_fail(record, "the task service restarted while the task ran")
            elif record.status in (records.PENDING, records.RETRY) and record.queue in self.queues:
                self.queues[record.queue].pending.append(record.id)
        for queue in self.queues.values():
            queue.wake.set()

    def _activate(self, config: dict[str, Any], spec_blob: bytes) -> _Queue:
        queue = _Queue(config=config, spec_ref=ray.put(spec_blob))
        old = self.queues.get(config["queue"])
        if old is not None:
            queue.pending, queue.running = old.pending, old.running
            if old.loop:
                old.loop.cancel()
        self.queues[config["queue"]] = queue
        queue.loop = asyncio.get_running_loop().create_task(self._dispatch(queue))
        return queue

    async def register_queue(self, config: dict[str, Any], spec_blob: bytes) -> None:
        """Start (or replace) a queue version; its config says resources, runtime env and policies."""
        import json

        await self._start()
        self.store.put(f"{_QUEUES}{config['queue']}/spec", spec_blob)
        self.store.put(f"{_QUEUES}{config['queue']}/config", json.dumps(config).encode())
        queue = self._activate(config, spec_blob)
        for record in sorted(self.tasks.values(), key=lambda r: r.created_at):
            if record.queue == config["queue"] and record.status in (records.PENDING, records.RETRY) \
                    and record.id not in queue.pending:
                queue.pending.append(record.id)
        queue.wake.set()

    async def unregister_queue(self, queue_id: str) -> None:
        """Stop taking work from a queue version; its pending tasks stay PENDING (and expire)."""
        await self._start()
        queue = self.queues.pop(queue_id, None)
        if queue and queue.loop:
            queue.loop.cancel()
        self.store.delete(f"{_QUEUES}{queue_id}/config")
        self.store.delete(f"{_QUEUES}{queue_id}/spec")

    # --- API -----------------------------------------------------------------------------------------

    async def submit(self, queue_id: str, args: list[Any], kwargs: dict[str, Any], callback_url: str = "") -> str:
        await self._start()
        queue = self.queues.get(queue_id)
        if queue is None:
            raise KeyError(f"task queue {queue_id} is not running")
        return self._enqueue(queue, args, kwargs, callback_url)

    def _enqueue(self, queue: _Queue, args: list[Any], kwargs: dict[str, Any], callback_url: str) -> str:
        if len(queue.pending) >= queue.config["max_pending_tasks"]:
            raise QueueFullError(f"task queue {queue.config['name']} already holds "
                                 f"{queue.config['max_pending_tasks']} pending tasks (max_pending_tasks)")
        now = time.time()
        record = TaskRecord(id=str(uuid.uuid4()), queue=queue.config["queue"], name=queue.config["name"],
                            stub_id=queue.config["stub_id"], status=records.PENDING, args=list(args),
                            kwargs=dict(kwargs), created_at=now, updated_at=now,
                            callback_url=callback_url or kwargs.get("callback_url") or queue.config["callback_url"])
        self._save(record)
        queue.pending.append(record.id)
        queue.wake.set()
        return record.id

    async def get(self, task_id: str) -> dict[str, Any] | None:
        await self._start()
        record = self.tasks.get(task_id)
        return None if record is None else self._view(record, with_outputs=True)

    async def list(self, status: list[str] | None = None, name: str | None = None, limit: int = 100
                   ) -> list[dict[str, Any]]:
        await self._start()
        wanted = {records.normalize_status(s) for s in status} if status else None
        found = [r for r in self.tasks.values()
                 if (wanted is None or r.status in wanted) and (name is None or r.name == name)]
        found.sort(key=lambda r: r.created_at, reverse=True)
        return [self._view(r) for r in found[:limit]]

    async def cancel(self, task_ids: list[str]) -> list[str]:
        """Cancel pending or running tasks; returns the ids that were cancelled."""
        await self._start()
        cancelled = []
        for task_id in task_ids:
            record = self.tasks.get(task_id)
            if record is None or record.status in records.TERMINAL:
                continue
            queue = self.queues.get(record.queue)
            ref = queue.running.pop(task_id, None) if queue else None
            self._finish(record, records.CANCELLED, result=None)
            if ref is not None:
                ray.cancel(ref, force=True)
            cancelled.append(task_id)
            if queue:
                queue.wake.set()
        return cancelled

    async def stats(self, queue_id: str) -> dict[str, int]:
        await self._start()
        queue = self.queues.get(queue_id)
        if queue is None:
            return {"active_containers": 0, "queue_depth": 0}
        return {"active_containers": math.ceil(len(queue.running) / queue.config["workers"]),
                "queue_depth": len(queue.pending)}

    # --- dispatch ------------------------------------------------------------------------------------

    async def _dispatch(self, queue: _Queue) -> None:
        ticks = _Ticks(queue.config["schedule"]) if queue.config.get("schedule") else None
        while True:
            if ticks is not None and ticks.due():
                with contextlib.suppress(QueueFullError):
                    self._enqueue(queue, [], {}, "")
            self._expire(queue)
            while queue.pending and len(queue.running) < queue.capacity():
                record = self.tasks.get(queue.pending.popleft())
                if record is not None and record.status in (records.PENDING, records.RETRY):
                    self._launch(queue, record)
            queue.wake.clear()
            try:
                await asyncio.wait_for(queue.wake.wait(), timeout=ticks.wait(1.0) if ticks else 1.0)
            except asyncio.TimeoutError:
                pass

    def _expire(self, queue: _Queue) -> None:
        ttl = queue.config["ttl"] or DEFAULT_TTL_S
        now = time.time()
        while queue.pending:
            record = self.tasks.get(queue.pending[0])
            if record is not None and record.status in (records.PENDING, records.RETRY) \
                    and now - record.created_at <= ttl:
                break
            queue.pending.popleft()
            if record is not None and record.status in (records.PENDING, records.RETRY):
                self._finish(record, records.EXPIRED, result=None)

    def _launch(self, queue: _Queue, record: TaskRecord) -> None:
        record.status, record.attempts = records.RUNNING, record.attempts + 1
        record.started_at = record.started_at or time.time()
        self._save(record)
        if queue.launcher is None:
            queue.launcher = ray.remote(**queue.config["ray_options"], max_retries=0,
                                        runtime_env=queue.config["runtime_env"])(run_queued_task)
        meta = {"task_id": record.id, "stub_id": record.stub_id, "callback_url": record.callback_url}
        name = f"{queue.config['handler']} task={record.id}"  # the Beam task id, findable in the dashboard
        ref = queue.launcher.options(name=name).remote(queue.spec_ref, record.args, record.kwargs, meta)
        queue.running[record.id] = ref
        asyncio.get_running_loop().create_task(self._supervise(queue, record, ref))

    async def _supervise(self, queue: _Queue, record: TaskRecord, ref: Any) -> None:
        timeout = queue.config["timeout"]
        try:
            outcome = await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout=timeout)
        except asyncio.TimeoutError:
            ray.cancel(ref, force=True)  # stops the running code: the worker process is killed
            if queue.running.pop(record.id, None) is not None:
                self._finish(record, records.TIMEOUT, result=None,
                             error=f"Task timed out after {timeout:g}s")
            queue.wake.set()
            return
        except TaskCancelledError:
            outcome = None
        except RayError as exc:  # the worker crashed or was killed
            if queue.running.pop(record.id, None) is not None:
                self._retry_or_fail(record, f"worker failure: {exc}")
            queue.wake.set()
            return
        if queue.running.pop(record.id, None) is None or outcome is None:
            return  # cancelled meanwhile: the cancel already recorded the status
        kind, payload, retryable, container_id = outcome
        record.container_id = container_id
        if kind == "ok":
            self._finish(record, records.COMPLETE, result=payload)
        elif retryable:
            self._retry_or_fail(record, payload)
        else:
            self._finish(record, records.FAILED, result=None, error=payload)
        queue.wake.set()

    # --- state changes -------------------------------------------------------------------------------

    def _retry_or_fail(self, record: TaskRecord, error: str) -> None:
        queue = self.queues.get(record.queue)
        retries = queue.config["retries"] if queue else 0
        if record.attempts <= retries and queue is not None:
            record.status, record.error, record.updated_at = records.RETRY, error, time.time()
            self._save(record)
            queue.pending.append(record.id)
        else:
            self._finish(record, records.FAILED, result=None, error=error)

    def _finish(self, record: TaskRecord, status: str, result: Any, error: str = "") -> None:
        record.status, record.result, record.error = status, result, error or record.error
        record.ended_at = record.updated_at = time.time()
        self._save(record)
        if record.callback_url:
            from beamray import callbacks

            data = result if status == records.COMPLETE and result is not None else {}
            self._callbacks.submit(callbacks.send, record.callback_url, record.id, status, data)

    def _save(self, record: TaskRecord) -> None:
        record.updated_at = time.time()
        self.tasks[record.id] = record
        self.store.put(f"{_TASKS}{record.id}", record.to_json())

    def _view(self, record: TaskRecord, with_outputs: bool = False) -> dict[str, Any]:
        """The task as Beam's task API shows it (outputs, with fresh signed URLs, for single tasks)."""
        queue = self.queues.get(record.queue)
        config = queue.config if queue else {}
        stats = {"active_containers": math.ceil(len(queue.running) / config["workers"]) if queue else 0,
                 "queue_depth": len(queue.pending) if queue else 0}
        return {
            "id": record.id, "status": record.status, "started_at": records.iso(record.started_at),
            "ended_at": records.iso(record.ended_at), "container_id": record.container_id,
            "created_at": records.iso(record.created_at), "updated_at": records.iso(record.updated_at),
            "outputs": _outputs(record.id) if with_outputs else [], "stats": stats, "result": record.result, "error": record.error or None,
            "attempts": record.attempts,
            "stub": {"id": record.stub_id, "name": f"{config.get('kind', 'taskqueue')}/{record.name}",
                     "type": f"{config.get('kind', 'taskqueue')}/deployment",
                     "config": config.get("public_config", {})},
        }
