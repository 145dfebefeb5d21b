"""How ``.map`` cuts its inputs into Ray tasks: one task per input when inputs are slow, chunks when fast.

A trivial Ray task costs about 1 ms of CPU across driver, raylet and worker, so a map over trivial inputs
is bound by that cost, and fractional ``cpu=`` lets Ray run (and start a worker process for) dozens of
them at once. The plan measures the inputs' own run time, which every chunk reports, and sizes chunks to
about ``TARGET_S`` of work, keeping only as many in flight as the cluster has CPUs. Slow inputs (or none
measured yet after ``PROBE_S``) go one per task with as many in flight as the resources allow, as before.
"""

from __future__ import annotations

import math
import time

TARGET_S = 0.02  # work per chunk: far above a task's own cost, small enough to balance across workers
MAX_CHUNK = 1024
PROBE_S = 5.0  # no chunk measured by then (a fresh worker's start-up included): inputs are slow
MAX_SLOTS = 256


class ChunkPlan:
    """Chunk size and tasks in flight for one ``.map``, adapted from the seconds per input measured so far."""

    def __init__(self, cluster_cpus: float, task_cpus: float, total: int | None) -> None:
        slots = cluster_cpus / task_cpus if task_cpus > 0 else MAX_SLOTS
        self.slots = max(1, min(MAX_SLOTS, int(slots)))
        self.cores = max(1, min(self.slots, int(math.ceil(cluster_cpus))))
        self.total = total
        self.per_input: float | None = None
        self._started = time.monotonic()

    def measured(self, sample: float) -> None:
        """A chunk's median seconds per input (inside the worker): fold it into the estimate."""
        self.per_input = sample if self.per_input is None else (self.per_input + sample) / 2

    def _slow(self) -> bool:
        if self.per_input is None:
            return time.monotonic() - self._started > PROBE_S
        return self.per_input >= TARGET_S

    def in_flight(self) -> int:
        """How many tasks to keep submitted: every slot (twice over, to keep Ray's queue fed) when slow."""
        return 2 * self.slots if self._slow() else self.cores

    def size(self, submitted: int) -> int:
        """Inputs in the next chunk: one until measured; then ``TARGET_S`` worth, leaving work for every core."""
        if self.per_input is None or self._slow():
            return 1
        size = min(MAX_CHUNK, max(1, int(TARGET_S / max(self.per_input, 1e-7))))
        if self.total is not None:
            size = min(size, max(1, (self.total - submitted) // (2 * self.cores)))
        return size
