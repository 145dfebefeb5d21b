"""A task queue's containers: pools of worker actors that scale with queue depth, as Beam's do.

Beam's QueueDepthAutoscaler asks for one container per ``tasks_per_container`` queued tasks, between
``min_containers`` and ``max_containers``; a container is ``workers`` worker processes (here: actors
sharing a ``container_id``). Workers start on demand and stop after ``keep_warm_seconds`` idle, so a
busy queue keeps its processes (and what ``on_start`` loaded) and an idle one gives its resources back.
"""

from __future__ import annotations

import collections
import math
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import ray

from beamray.tasks.config import QueueConfig
from beamray.tasks.worker import TaskWorker

# keep_warm_seconds=0 (deployed functions) still lets a task that arrives right behind the last one reuse
# its process, as Ray's own idle-worker pool would.
MIN_IDLE_S = 1.0


@dataclass(eq=False)  # identity: each is one process
class Worker:
    actor: Any
    container_id: str
    idle_since: float = field(default_factory=time.monotonic)
    tasks: collections.deque = field(default_factory=collections.deque)  # its owner's launches, the first running
    stopped: bool = False
    ready: bool = False  # its ``__init__`` (code load, ``on_start``) has returned
    started_ref: Any = None  # ``__ray_ready__``, asked for once, on the worker's first launch


class ContainerPool:
    def __init__(self, config: QueueConfig, spec_ref: Any) -> None:
        self.config = config
        self.spec_ref = spec_ref
        self.idle: collections.deque[Worker] = collections.deque()
        self.members: collections.Counter[str] = collections.Counter()  # container id → live workers
        self._actor = TaskWorker.options(**config.ray_options, runtime_env=config.runtime_env)

    def capacity(self, demand: int) -> int:
        """How many tasks may run at once for ``demand`` queued and running tasks."""
        config = self.config
        wanted = math.ceil(demand / config.tasks_per_container)
        containers = max(config.min_containers, min(config.max_containers, wanted))
        return containers * config.workers

    def active_containers(self) -> int:
        return len(self.members)

    def acquire(self) -> Worker:
        """An idle worker (most recently used first: its caches are warm), else a new one."""
        return self.idle.pop() if self.idle else self._start()

    def release(self, worker: Worker) -> None:
        worker.idle_since = time.monotonic()
        self.idle.append(worker)

    def discard(self, worker: Worker) -> None:
        """Stop a worker's process (a timed-out or cancelled task's code stops with it)."""
        if worker.stopped:
            return
        worker.stopped = True
        ray.kill(worker.actor, no_restart=True)
        if self.members[worker.container_id] <= 1:
            del self.members[worker.container_id]
        else:
            self.members[worker.container_id] -= 1

    def rescale(self) -> None:
        """Keep ``min_containers`` containers up; stop other workers idle past ``keep_warm_seconds``."""
        floor = self.config.min_containers * self.config.workers
        while sum(self.members.values()) < floor:
            self.release(self._start())
        keep_warm = max(self.config.keep_warm_seconds, MIN_IDLE_S)
        now = time.monotonic()
        while self.idle and now - self.idle[0].idle_since > keep_warm and sum(self.members.values()) > floor:
            self.discard(self.idle.popleft())

    def close(self) -> None:
        """Stop the idle workers; busy ones are discarded by their owner when their task ends."""
        while self.idle:
            self.discard(self.idle.popleft())

    def _start(self) -> Worker:
        workers = self.config.workers
        container_id = next((cid for cid, count in self.members.items() if count < workers), None)
        if container_id is None:
            container_id = f"{self.config.kind}-{self.config.stub_id[:8]}-{uuid.uuid4().hex[:8]}"
        self.members[container_id] += 1
        return Worker(self._actor.remote(self.spec_ref, self.config.handler, container_id), container_id)
