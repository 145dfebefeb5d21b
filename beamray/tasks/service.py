"""The task service: one detached async actor that owns every task queue's pending work.

It keeps task records in the durable store (written behind by ``journal.Journal``; it is their only
writer), runs each queue's tasks in that queue's containers (``containers.ContainerPool``: worker actors
with the queue's resources and code, scaled with queue depth), and turns outcomes into Beam's statuses:
an exception in ``retry_for`` or a crashed worker → RETRY (up to ``retries``), any other exception →
FAILED, past ``timeout`` → TIMEOUT (the worker process is killed), cancelled → CANCELLED, never started
within the TTL, or of a queue version that was stopped → EXPIRED. On (re)start it reloads every record:
RUNNING tasks of a dead service are retried, PENDING ones run. A task is marked COMPLETE at most once.
Finished tasks are kept ``BEAMRAY_TASK_RETENTION_S`` (7 days), then forgotten, in memory and in the store.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import time
import uuid
from typing import Any

import ray

from beamray import ray_private
from beamray.exceptions import StoreUnavailableError, TaskQueueFullError
from beamray.store import open_store
from beamray.tasks import records
from beamray.tasks.config import QueueConfig
from beamray.tasks.containers import ContainerPool
from beamray.tasks.dispatch import Dispatch, Queue
from beamray.tasks.journal import Journal
from beamray.tasks.records import TaskRecord, TaskTooLargeError

_log = logging.getLogger(__name__)
SERVICE_NAME = "beamray-task-service"
_QUEUES = "taskqueues/"
_NO_STATS = {"active_containers": 0, "queue_depth": 0}  # a queue that is not running
ROLLBACK_GRACE_S = 60.0


def _outputs(task_id: str) -> list[dict[str, Any]]:
    """The task's saved Outputs with fresh signed URLs (Beam's task API ``outputs``)."""
    from beamray import outputs

    return outputs.outputs_for_task(task_id)


def _code_present(config: QueueConfig) -> bool:
    """After a cluster restart the uploaded code is gone from the GCS until the queue is registered again."""
    uri = config.runtime_env.get("working_dir")
    return uri is None or ray_private.package_exists(uri)


# The service's enqueue and polling calls stay out of Ray's task events: they are not user work (the
# dashboard lists each task's run, under its handler's name, instead) and would crowd out the tasks there.
_quiet = ray.method(enable_task_events=False)


@ray.remote(num_cpus=0, max_restarts=-1, max_concurrency=1000)
class TaskService(Dispatch):
    def __init__(self) -> None:
        self.store = open_store()
        self.journal = Journal(self.store)
        self.tasks: dict[str, TaskRecord] = {}
        self.queues: dict[str, Queue] = {}
        self.known: dict[str, QueueConfig] = {}  # every registered queue version, running or not (yet)
        self._callbacks = concurrent.futures.ThreadPoolExecutor(4, thread_name_prefix="beamray-callback")
        self._started = False
        self._sweeper: asyncio.Task | None = None
        # Tasks refused because the store failed: their write may still land (a stalled Redis runs the
        # commands it had buffered when it resumes), so the sweep deletes them until the grace ends.
        self._rolled_back: dict[str, float] = {}

    # --- lifecycle ---------------------------------------------------------------------------------

    async def _start(self) -> None:
        """Load the records and queues once (no await inside: nothing interleaves). A load that fails
        leaves the service unstarted, so the next call tries again instead of serving an empty service."""
        if self._started:
            return
        for record in self.journal.load():
            self.tasks[record.id] = record
        for key, raw in self.store.scan(_QUEUES).items():
            if key.endswith("/config"):
                config = QueueConfig.from_json(raw)
                self.known[config.queue] = config
                blob = self.store.get(f"{_QUEUES}{config.queue}/spec")
                if blob is not None and _code_present(config):
                    self._activate(config, blob)  # else a restore will register it again with fresh code
        self._started = True
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep())
        for record in sorted(self.tasks.values(), key=lambda r: r.created_at):
            if record.status == records.RUNNING:  # its worker died with the previous service
                self._retry_or_fail(record, "the task service restarted while the task ran")
            elif record.status in (records.PENDING, records.RETRY) and record.queue in self.queues:
                self.queues[record.queue].pending.append(record.id)
        for queue in self.queues.values():
            queue.wake.set()

    def _activate(self, config: QueueConfig, spec_blob: bytes) -> Queue:
        queue = Queue(config=config, pool=ContainerPool(config, ray.put(spec_blob)))
        old = self.queues.get(config.queue)
        if old is not None:  # its running tasks finish in its workers, which then stop
            queue.pending, queue.running, queue.queued = old.pending, old.running, old.queued
            old.pool.close()
            if old.loop:
                old.loop.cancel()
        self.queues[config.queue] = queue
        queue.loop = asyncio.get_running_loop().create_task(self._dispatch(queue))
        return queue

    async def register_queue(self, config: QueueConfig, spec_blob: bytes) -> None:
        """Start (or replace) a queue version; its config says resources, runtime env and policies."""
        await self._start()
        await asyncio.to_thread(self.store.put_many, {f"{_QUEUES}{config.queue}/spec": spec_blob,
                                                      f"{_QUEUES}{config.queue}/config": config.to_json()})
        self.known[config.queue] = config
        queue = self._activate(config, spec_blob)
        for record in sorted(self.tasks.values(), key=lambda r: r.created_at):
            if record.queue == config.queue and record.status in (records.PENDING, records.RETRY) \
                    and record.id not in queue.pending:
                queue.pending.append(record.id)
        queue.wake.set()

    async def unregister_queue(self, queue_id: str) -> None:
        """Stop a queue version. Nothing would ever run its tasks that have not started: they expire now,
        so their waiting clients (``result(wait=True)``, SSE) get an answer."""
        await self._start()
        queue = self.queues.pop(queue_id, None)
        config = self.known.pop(queue_id, None)
        if queue:
            for task_id in list(queue.queued):  # held by a busy worker to run next: it must not start
                self._unqueue(queue, task_id)
            queue.pool.close()
            if queue.loop:
                queue.loop.cancel()
        name = config.name if config else queue_id
        self._expire_unstarted(lambda record: record.queue == queue_id,
                               f"the task queue {name} was stopped before the task ran")
        await asyncio.to_thread(self.store.delete, f"{_QUEUES}{queue_id}/config")
        await asyncio.to_thread(self.store.delete, f"{_QUEUES}{queue_id}/spec")

    def _expire_unstarted(self, which: Any, error: str) -> None:
        for record in list(self.tasks.values()):
            if record.status in (records.PENDING, records.RETRY) and which(record):
                self._finish(record, records.EXPIRED, result=None, error=error)

    async def _sweep(self) -> None:
        """Forever: expire tasks no queue will ever run, and forget finished tasks past the retention."""
        retention = records.retention_seconds()
        while True:
            try:
                if self._rolled_back:
                    await asyncio.wrap_future(self.journal.remove(list(self._rolled_back)))
                    now = time.time()
                    self._rolled_back = {key: end for key, end in self._rolled_back.items() if end > now}
                self._expire_unstarted(lambda record: record.queue not in self.known,
                                       "the task's queue no longer exists")
                horizon = time.time() - retention
                old = [task_id for task_id, record in self.tasks.items()
                       if record.status in records.TERMINAL and (record.ended_at or record.updated_at) < horizon]
                if old:
                    await asyncio.wrap_future(self.journal.remove(old))
                    for task_id in old:
                        self.tasks.pop(task_id, None)
            except Exception:  # the store is down: the next round tries again
                _log.warning("task sweep failed; retrying", exc_info=True)
            await asyncio.sleep(1.0 if self._rolled_back else min(10.0, max(0.5, retention / 4)))

    # --- API -----------------------------------------------------------------------------------------

    @_quiet
    async def submit(self, queue_id: str, args: list[Any], kwargs: dict[str, Any], callback_url: str = "") -> str:
        (outcome,) = await self.submit_many(queue_id, [(args, kwargs, callback_url)])
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    @_quiet
    async def submit_many(self, queue_id: str, items: list[tuple[list[Any], dict[str, Any], str]]
                          ) -> list[str | TaskQueueFullError]:
        """Enqueue ``(args, kwargs, callback_url)`` items: each gets a task id, or the error that refused it.

        A task is accepted once its record is in the store: only then can it run. If the store fails,
        the whole call is rolled back (no task of it ever runs) and ``StoreUnavailableError`` says so, so
        a client that retries gets no duplicate. ``callback_url`` comes from trusted callers only (the
        token holder); a ``callback_url`` kwarg stays the handler's argument, as in Beam.
        """
        await self._start()
        queue = self.queues.get(queue_id)
        if queue is None:
            raise KeyError(f"task queue {queue_id} is not running")
        outcomes: list[str | TaskQueueFullError] = []
        admitted: list[TaskRecord] = []
        for args, kwargs, callback_url in items:
            try:
                admitted.append(self._new_task(queue, args, kwargs, callback_url))
            except (TaskQueueFullError, TaskTooLargeError) as exc:
                outcomes.append(exc)
                continue
            outcomes.append(admitted[-1].id)
            queue.admitting += 1
        try:
            await self.journal.durable()
        except StoreUnavailableError:
            for record in admitted:
                self.tasks.pop(record.id, None)
                self._rolled_back[record.id] = time.time() + ROLLBACK_GRACE_S
            self.journal.discard(self._rolled_back)
            raise
        finally:
            queue.admitting -= len(admitted)
        current = self.queues.get(queue_id)  # replaced or stopped meanwhile: the sweep expires them
        if current is not None:
            current.pending.extend(record.id for record in admitted)
            current.wake.set()
        return outcomes

    def _new_task(self, queue: Queue, args: list[Any], kwargs: dict[str, Any], callback_url: str) -> TaskRecord:
        if len(queue.pending) + len(queue.queued) + queue.admitting >= queue.config.max_pending_tasks:
            raise TaskQueueFullError(f"task queue {queue.config.name} already holds "
                                     f"{queue.config.max_pending_tasks} pending tasks (max_pending_tasks)")
        records.check_payload_size(args, kwargs)
        now = time.time()
        record = TaskRecord(id=str(uuid.uuid4()), queue=queue.config.queue, name=queue.config.name,
                            stub_id=queue.config.stub_id, status=records.PENDING, args=list(args),
                            kwargs=dict(kwargs), created_at=now, updated_at=now,
                            callback_url=callback_url or queue.config.callback_url)
        self._save(record)
        return record

    def _enqueue(self, queue: Queue, args: list[Any], kwargs: dict[str, Any], callback_url: str) -> str:
        """A task the service makes itself (a schedule's tick): pending at once, written behind."""
        record = self._new_task(queue, args, kwargs, callback_url)
        queue.pending.append(record.id)
        queue.wake.set()
        return record.id

    @_quiet
    async def get(self, task_id: str) -> dict[str, Any] | None:
        await self._start()
        record = self.tasks.get(task_id)
        if record is None:
            return None
        view = self._view(record)
        view["outputs"] = await asyncio.to_thread(_outputs, task_id)  # storage I/O: off the loop
        return view

    @_quiet
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
            self._finish(record, records.CANCELLED, result=None)
            if queue and task_id in queue.running:
                self._stop_worker(queue, queue.running.pop(task_id).worker)  # stops the running code
            elif queue and task_id in queue.queued:
                self._unqueue(queue, task_id)
            cancelled.append(task_id)
            if queue:
                queue.wake.set()
        await self.journal.durable()
        return cancelled

    async def stop_container(self, container_id: str) -> int:
        """Stop one container's workers (``beamray container stop``): a task it ran is retried as after a
        crash, and the pool starts workers again when there is work. How many workers were stopped."""
        await self._start()
        stopped = 0
        for queue in self.queues.values():
            busy = [launch.worker for launch in [*queue.running.values(), *queue.queued.values()]]
            for worker in {*queue.pool.idle, *busy}:
                if worker.container_id == container_id and not worker.stopped:
                    if worker in queue.pool.idle:
                        queue.pool.idle.remove(worker)
                    self._stop_worker(queue, worker)
                    stopped += 1
        return stopped

    @_quiet
    async def stats(self, queue_id: str) -> dict[str, int]:
        await self._start()
        queue = self.queues.get(queue_id)
        return queue.stats() if queue else dict(_NO_STATS)

    def _view(self, record: TaskRecord) -> dict[str, Any]:
        """The task as Beam's task API shows it (``get`` adds its outputs, with fresh signed URLs)."""
        queue = self.queues.get(record.queue)
        config = queue.config if queue else None
        stats = queue.stats() if queue else dict(_NO_STATS)
        kind = config.kind if config else "taskqueue"
        return {
            "id": record.id, "status": record.status, "started_at": records.iso(record.started_at),
            "ended_at": records.iso(record.ended_at), "container_id": record.container_id,
            "created_at": records.iso(record.created_at), "updated_at": records.iso(record.updated_at),
            "outputs": [], "stats": stats, "result": record.result, "error": record.error or None,
            "attempts": record.attempts,
            "stub": {"id": record.stub_id, "name": f"{kind}/{record.name}", "type": f"{kind}/deployment",
                     "config": config.public_config if config else {}, "config_version": 0, "object_id": 0,
                     "created_at": records.iso(config.created_at if config else None),
                     "updated_at": records.iso(config.created_at if config else None)},
        }
