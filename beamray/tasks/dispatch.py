"""How the task service runs a queue: its dispatch loop, launches, outcomes, timeouts and expiry.

``Dispatch`` is the part of ``TaskService`` (``service.py``) that moves tasks: it keeps at most the
queue's capacity running in its containers, hands a busy worker its next task, settles each outcome
into Beam's statuses, kills workers past ``timeout``, expires tasks not started within the TTL, and fires
schedules' cron ticks. It works on the service's ``tasks``, ``queues``, ``known``, ``journal`` and
``_callbacks``.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import math
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable

import ray
from ray.exceptions import RayError

from beamray.exceptions import TaskQueueFullError
from beamray.tasks import records
from beamray.tasks.config import QueueConfig
from beamray.tasks.containers import ContainerPool, Worker
from beamray.tasks.records import TaskRecord

_log = logging.getLogger(__name__)
DEFAULT_TTL_S = 7200.0
# A task's timeout counts from when it starts running, as Beam's does, not from when its container was asked
# for; a container that never comes up (a node that never joins, an on_start that hangs) still ends its
# task after the timeout plus this allowance.
CONTAINER_START_ALLOWANCE_S = 900.0


@dataclass(eq=False)  # identity: two launches are never the same one
class Launch:
    record: TaskRecord
    ref: Any
    worker: Worker
    deadline: float = math.inf  # time.monotonic() past which the task times out, once it started


@dataclass
class Queue:
    config: QueueConfig
    pool: ContainerPool
    pending: collections.deque = field(default_factory=collections.deque)
    running: dict[str, Launch] = field(default_factory=dict)  # task id → its launch, in start order
    # Handed to a busy worker to run next (still PENDING): the worker starts it the moment the task before
    # it ends, without waiting for the service to hear of that and send it one.
    queued: dict[str, Launch] = field(default_factory=dict)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    loop: asyncio.Task | None = None
    admitting: int = 0  # tasks of submits waiting for their records to be written (count as pending)

    def capacity(self) -> int:
        return self.pool.capacity(len(self.pending) + len(self.queued) + len(self.running))

    def stats(self) -> dict[str, int]:
        return {"active_containers": self.pool.active_containers(),
                "queue_depth": len(self.pending) + len(self.queued)}


class Ticks:
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


class Dispatch:
    tasks: dict[str, TaskRecord]
    queues: dict[str, Queue]
    known: dict[str, QueueConfig]

    async def _dispatch(self, queue: Queue) -> None:
        ticks = Ticks(queue.config.schedule) if queue.config.schedule else None
        while True:
            queue.wake.clear()
            try:
                self._dispatch_once(queue, ticks)
            except Exception:  # a bug here must not stop the queue for good: log it, go on next round
                _log.exception("task queue %s: dispatch failed", queue.config.queue)
            longest = min([1.0, *(launch.deadline - time.monotonic() for launch in queue.running.values())])
            try:
                await asyncio.wait_for(queue.wake.wait(), timeout=ticks.wait(longest) if ticks else longest)
            except asyncio.TimeoutError:
                pass

    def _dispatch_once(self, queue: Queue, ticks: Ticks | None) -> None:
        if ticks is not None and ticks.due():
            with contextlib.suppress(TaskQueueFullError):
                self._enqueue(queue, [], {}, "")
        self._expire(queue)
        self._time_out(queue)
        while len(queue.running) < queue.capacity() and (record := self._next_pending(queue)):
            self._launch(queue, record, queue.pool.acquire())
        for launch in list(queue.running.values()):
            if len(launch.worker.tasks) == 1 and (record := self._next_pending(queue)):
                self._launch(queue, record, launch.worker)
        queue.pool.rescale()

    def _time_out(self, queue: Queue) -> None:
        """Stop tasks running past their deadline."""
        now = time.monotonic()
        for task_id, launch in list(queue.running.items()):
            if launch.deadline > now:
                continue
            del queue.running[task_id]
            self._stop_worker(queue, launch.worker)  # stops the running code: the worker process is killed
            self._finish(launch.record, records.TIMEOUT, result=None,
                         error=f"Task timed out after {queue.config.timeout:g}s")

    def _expire(self, queue: Queue) -> None:
        """Tasks not started within the TTL expire, including those a busy worker holds to run next."""
        ttl = queue.config.ttl or DEFAULT_TTL_S
        now = time.time()
        for task_id, launch in list(queue.queued.items()):
            if now - launch.record.created_at > ttl:
                self._unqueue(queue, task_id)
                self._finish(launch.record, records.EXPIRED, result=None)
        while queue.pending:
            record = self.tasks.get(queue.pending[0])
            if record is not None and record.status in (records.PENDING, records.RETRY) \
                    and now - record.created_at <= ttl:
                break
            queue.pending.popleft()
            if record is not None and record.status in (records.PENDING, records.RETRY):
                self._finish(record, records.EXPIRED, result=None)

    def _unqueue(self, queue: Queue, task_id: str) -> None:
        """Take back a task a worker holds to run next; Ray drops it before it starts."""
        launch = queue.queued.pop(task_id)
        launch.worker.tasks.remove(launch)
        ray.cancel(launch.ref)

    def _next_pending(self, queue: Queue) -> TaskRecord | None:
        while queue.pending:
            record = self.tasks.get(queue.pending.popleft())
            if record is not None and record.status in (records.PENDING, records.RETRY):
                return record
        return None

    def _launch(self, queue: Queue, record: TaskRecord, worker: Worker) -> None:
        """Hand ``record`` to ``worker``: it starts now if the worker is idle, else right after its task."""
        if not worker.ready and worker.started_ref is None:
            self._watch_start(queue, worker)  # asked before the task: the actor answers calls in order
        meta = {"task_id": record.id, "stub_id": record.stub_id, "callback_url": record.callback_url}
        name = f"{queue.config.handler} task={record.id}"  # the Beam task id, findable in the dashboard
        ref = worker.actor.run.options(name=name).remote(record.args, record.kwargs, meta)
        launch = Launch(record, ref, worker)
        worker.tasks.append(launch)
        queue.queued[record.id] = launch
        if len(worker.tasks) == 1:
            self._mark_started(queue, launch)
        loop = asyncio.get_running_loop()
        ref.future().add_done_callback(lambda done: loop.call_soon_threadsafe(self._settle, queue, launch, done))

    def _mark_started(self, queue: Queue, launch: Launch) -> None:
        """The task reached the front of its worker: it runs from now on (its timeout, once the worker is up)."""
        record = launch.record
        del queue.queued[record.id]
        record.status, record.attempts = records.RUNNING, record.attempts + 1
        record.started_at = record.started_at or time.time()
        allowance = 0.0 if launch.worker.ready else CONTAINER_START_ALLOWANCE_S
        launch.deadline = time.monotonic() + (queue.config.timeout or math.inf) + allowance
        queue.running[record.id] = launch
        self._save(record)

    def _watch_start(self, queue: Queue, worker: Worker) -> None:
        """Learn when a new worker is up, so the task it runs first is timed from then."""
        worker.started_ref = worker.actor.__ray_ready__.remote()
        loop = asyncio.get_running_loop()
        worker.started_ref.future().add_done_callback(
            lambda _: loop.call_soon_threadsafe(self._worker_started, queue, worker))

    def _worker_started(self, queue: Queue, worker: Worker) -> None:
        worker.ready = True
        first = worker.tasks[0] if worker.tasks else None  # its task, unless that was cancelled meanwhile
        if first is not None and queue.running.get(first.record.id) is first:
            first.deadline = time.monotonic() + (queue.config.timeout or math.inf)
            queue.wake.set()

    def _settle(self, queue: Queue, launch: Launch, done: concurrent.futures.Future) -> None:
        """Record a launch's outcome, unless a cancel or timeout already did (and stopped its worker)."""
        record, worker = launch.record, launch.worker
        if queue.queued.get(record.id) is launch:  # it ran before the service saw the task ahead of it end
            self._mark_started(queue, launch)
        if queue.running.get(record.id) is not launch:
            return
        del queue.running[record.id]
        queue.wake.set()
        try:
            kind, payload, retryable, container_id = done.result()
        except RayError as exc:  # the worker crashed or was killed
            self._stop_worker(queue, worker)
            self._retry_or_fail(record, f"worker failure: {exc}")
            return
        record.container_id = container_id
        if kind == "ok":
            self._finish(record, records.COMPLETE, result=payload)
        elif retryable:
            self._retry_or_fail(record, payload)
        else:
            self._finish(record, records.FAILED, result=None, error=payload)
        worker.tasks.remove(launch)
        if self.queues.get(record.queue) is not queue:  # the queue was stopped or replaced meanwhile
            self._stop_worker(queue, worker)
        elif worker.tasks:
            if worker.tasks[0].record.id in queue.queued:
                self._mark_started(queue, worker.tasks[0])
        else:
            queue.pool.release(worker)

    def _stop_worker(self, queue: Queue, worker: Worker) -> None:
        """Kill a worker's process; the task it had queued next goes back to the front of the queue."""
        queue.pool.discard(worker)
        for launch in reversed(worker.tasks):
            if queue.queued.pop(launch.record.id, None) is launch:
                queue.pending.appendleft(launch.record.id)
        worker.tasks.clear()
        queue.wake.set()

    # --- state changes -------------------------------------------------------------------------------

    def _retry_or_fail(self, record: TaskRecord, error: str) -> None:
        """Retry while attempts remain; a queue not registered again yet (after a restart) takes its
        retried tasks when it is."""
        queue = self.queues.get(record.queue)
        config = queue.config if queue else self.known.get(record.queue)
        if config is not None and record.attempts <= config.retries:
            record.status, record.error, record.updated_at = records.RETRY, error, time.time()
            self._save(record)
            if queue is not None:
                queue.pending.append(record.id)
        else:
            self._finish(record, records.FAILED, result=None, error=error)

    def _finish(self, record: TaskRecord, status: str, result: Any, error: str = "") -> None:
        record.status, record.result, record.error = status, result, error or record.error
        record.ended_at = record.updated_at = time.time()
        notify = None
        if record.callback_url:
            from beamray import callbacks

            data = result if status == records.COMPLETE and result is not None else {}
            notify = partial(self._callbacks.submit, callbacks.send, record.callback_url, record.id, status, data)
        self._save(record, then=notify)  # the callback goes out once the outcome is written: at most once

    def _save(self, record: TaskRecord, then: Callable[[], Any] | None = None) -> None:
        record.updated_at = time.time()
        self.tasks[record.id] = record
        self.journal.save(record, then)
