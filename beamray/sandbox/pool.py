"""The warm pool: sandbox actors started ahead of demand, so ``create()`` skips a Ray actor start.

One detached ``SandboxPool`` actor (``beamray:sandbox-pool``) keeps, per shape (the image's runtime env
plus cpu/memory/gpu, which an actor cannot change once started), a few ``SandboxContainer`` actors that
are up and have probed their node's isolation. A claim hands one over and refills in the background, up
to the number of creates of that shape in the last minute, at most ``BEAMRAY_SANDBOX_POOL`` (default 2),
and at most ``BEAMRAY_SANDBOX_POOL_TOTAL`` (4) over all shapes: a new shape displaces the oldest pooled one.
An actor left unclaimed for ``BEAMRAY_SANDBOX_POOL_IDLE_S`` (300 s) is stopped, so an idle cluster holds
no pool. Pooled actors hold their resources while they wait (Ray cannot resize an actor); each node
gets its pool as Ray places the actors.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections import defaultdict, deque
from typing import Any

import ray

from beamray import cluster
from beamray.sandbox.actor import SandboxContainer

POOL_NAME = "beamray:sandbox-pool"
_DEMAND_WINDOW_S = 60.0


def new_sandbox_id() -> str:
    return f"sandbox-{uuid.uuid4().hex}"


def launch(sandbox_id: str, options: dict[str, Any]) -> Any:
    """Start one ``SandboxContainer`` actor named ``sandbox_id`` (detached, in beamray's namespace)."""
    return ray.remote(SandboxContainer).options(
        name=sandbox_id, namespace=cluster.NAMESPACE, lifetime="detached", max_concurrency=64, max_restarts=0,
        **options).remote(sandbox_id)


class SandboxPool:
    """Pre-started sandbox actors per shape, sized by recent demand."""

    def __init__(self) -> None:
        self.limit = int(os.environ.get("BEAMRAY_SANDBOX_POOL", "2"))
        self.total_limit = int(os.environ.get("BEAMRAY_SANDBOX_POOL_TOTAL", "4"))
        self.idle_s = float(os.environ.get("BEAMRAY_SANDBOX_POOL_IDLE_S", "300"))
        self.ready: dict[str, deque[tuple[str, Any, float]]] = defaultdict(deque)
        self.demand: dict[str, deque[float]] = defaultdict(deque)
        self.filling: dict[str, int] = defaultdict(int)
        self._reaper: asyncio.Task | None = None

    async def claim(self, key: str, options: dict[str, Any]) -> str | None:
        """A ready sandbox actor's name for this shape, or None (the caller starts one); refills either way."""
        if self._reaper is None:
            self._reaper = asyncio.get_running_loop().create_task(self._reap())
        now = time.monotonic()
        demand = self.demand[key]
        demand.append(now)
        while demand and now - demand[0] > _DEMAND_WINDOW_S:
            demand.popleft()
        name = self.ready[key].popleft()[0] if self.ready[key] else None
        asyncio.get_running_loop().create_task(self._refill(key, options))
        return name

    def _total(self) -> int:
        return sum(len(entries) for entries in self.ready.values()) + sum(self.filling.values())

    @staticmethod
    def _retire(handle: Any) -> None:
        """Stop a pooled actor: its folder deleted (``terminate``), then its process."""
        async def retire() -> None:
            try:
                await handle.terminate.remote()
            finally:
                ray.kill(handle, no_restart=True)
        asyncio.get_running_loop().create_task(retire())

    def _make_room(self, key: str) -> bool:
        """Under the total cap, or the oldest pooled actor of another shape stopped to get there."""
        if self._total() < self.total_limit:
            return True
        others = [entries for other, entries in self.ready.items() if other != key and entries]
        if not others:
            return False
        oldest = min(others, key=lambda entries: entries[0][2])
        self._retire(oldest.popleft()[1])
        return True

    async def _refill(self, key: str, options: dict[str, Any]) -> None:
        target = min(self.limit, len(self.demand[key]))
        while len(self.ready[key]) + self.filling[key] < target and self._make_room(key):
            self.filling[key] += 1
            sandbox_id = new_sandbox_id()
            try:
                handle = launch(sandbox_id, options)
                await handle.ready.remote()
                self.ready[key].append((sandbox_id, handle, time.monotonic()))
            except Exception:  # a shape that cannot start here: callers start cold and see the error
                return
            finally:
                self.filling[key] -= 1

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(5)
            now = time.monotonic()
            for entries in self.ready.values():
                while entries and now - entries[0][2] > self.idle_s:
                    self._retire(entries.popleft()[1])

    def size(self) -> dict[str, int]:
        return {key: len(entries) for key, entries in self.ready.items()}
