"""How the replica's app runs user code: a concurrency bound with an in-process queue, and a deadline.

At most ``concurrency`` handler calls run at once (an ``asyncio.Semaphore``); excess requests wait here
instead of being refused, because Serve's router degrades when requests exceed ``max_ongoing_requests``.
The deadline covers queueing plus the call. An async handler is cancelled at the deadline; a sync
handler's thread cannot be stopped: the caller gets its timeout at once, the thread finishes in the
background and keeps its slot until then, so ``concurrency`` stays a true bound on running user code.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Awaitable, Callable

class TimedOut(Exception):
    pass


def consume(task: asyncio.Future) -> None:
    """Retrieve an abandoned task's outcome so asyncio does not log it as never retrieved."""
    if not task.cancelled():
        task.exception()


class Slot:
    """One of ``concurrency`` permits; a thread that outlives its request keeps it until it returns."""

    __slots__ = ("_sem", "_released", "_detached")

    def __init__(self, sem: asyncio.Semaphore) -> None:
        self._sem = sem
        self._released = False
        self._detached = False

    @property
    def detached(self) -> bool:
        return self._detached

    def release(self) -> None:
        if not self._released and not self._detached:
            self._released = True
            self._sem.release()

    def detach(self, future: Future) -> None:
        """Hand the permit to a still-running thread: it is released when that thread finishes."""
        if self._detached or self._released:
            return
        self._detached = True
        loop = asyncio.get_running_loop()

        def done(_: Future) -> None:
            try:
                loop.call_soon_threadsafe(self._sem.release)
            except RuntimeError:  # loop closed: nobody is waiting any more
                pass

        future.add_done_callback(done)


class HandlerRunner:
    """Calls one handler under the replica's concurrency bound and per-request deadline."""

    def __init__(self, handler: Any, concurrency: int, timeout: float | None, is_async: bool,
                 call_inline: bool) -> None:
        self.handler = handler
        self.concurrency = concurrency
        self.timeout = timeout if timeout and timeout > 0 else None
        self.sem = asyncio.Semaphore(concurrency)
        self.is_async = is_async
        # Calling a generator function runs none of its code: do it on the loop, iterate in threads.
        self.call_inline = call_inline
        self.pool_: ThreadPoolExecutor | None = None

    def shutdown(self) -> None:
        if self.pool_ is not None:
            self.pool_.shutdown(wait=False)

    def pool(self) -> ThreadPoolExecutor:
        if self.pool_ is None:
            self.pool_ = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="beamray-handler")
        return self.pool_

    def deadline(self) -> float | None:
        return None if self.timeout is None else asyncio.get_running_loop().time() + self.timeout

    @staticmethod
    def remaining(deadline: float | None) -> float | None:
        return None if deadline is None else max(0.0, deadline - asyncio.get_running_loop().time())

    def timeout_message(self) -> str:
        return f"Task timed out after {self.timeout:g}s"

    async def acquire(self, deadline: float | None) -> Slot:
        if deadline is None or not self.sem.locked():
            await self.sem.acquire()
        else:
            try:
                await asyncio.wait_for(self.sem.acquire(), self.remaining(deadline))
            except asyncio.TimeoutError:
                raise TimedOut from None
        return Slot(self.sem)

    async def in_thread(self, func: Callable[[], Any], slot: Slot, deadline: float | None) -> Any:
        """Run ``func`` in the handler pool; on timeout or cancellation the thread keeps the slot."""
        cfut = self.pool().submit(contextvars.copy_context().run, func)
        afut = asyncio.wrap_future(cfut)
        try:
            done, _ = await asyncio.wait((afut,), timeout=self.remaining(deadline))
        except BaseException:
            slot.detach(cfut)
            afut.cancel()
            raise
        if not done:
            slot.detach(cfut)
            afut.cancel()
            raise TimedOut
        return afut.result()

    async def on_loop(self, awaitable: Awaitable[Any], deadline: float | None) -> Any:
        """Await user code, cancelling it at the deadline (a ``TimeoutError`` it raises stays a 500)."""
        if deadline is None:
            return await awaitable
        task = asyncio.ensure_future(awaitable)
        try:
            done, _ = await asyncio.wait((task,), timeout=self.remaining(deadline))
        except BaseException:
            task.cancel()
            task.add_done_callback(consume)
            raise
        if not done:
            task.cancel()
            task.add_done_callback(consume)
            raise TimedOut
        return task.result()

    async def call(self, func: Callable[[], Any], slot: Slot, deadline: float | None) -> Any:
        """Call the handler the way its kind needs: awaited, inline, or in a thread."""
        if self.is_async:
            return await self.on_loop(func(), deadline)
        result = func() if self.call_inline else await self.in_thread(func, slot, deadline)
        if inspect.isawaitable(result):
            result = await self.on_loop(result, deadline)
        return result

    async def items(self, result: Any, slot: Slot, deadline: float | None):
        """Yield a generator's items, sync ones pulled in the handler pool, all under the deadline."""
        if inspect.isasyncgen(result):
            while True:
                try:
                    yield await self.on_loop(result.__anext__(), deadline)
                except StopAsyncIteration:
                    return
        else:
            end = object()
            pull = functools.partial(next, result, end)
            while True:
                item = await self.in_thread(pull, slot, deadline)
                if item is end:
                    return
                yield item

    def close_generator(self, result: Any, slot: Slot) -> None:
        """Best-effort close of an abandoned generator (runs its ``finally`` blocks)."""
        if inspect.isasyncgen(result):
            task = asyncio.ensure_future(result.aclose())
            task.add_done_callback(consume)
        elif not slot.detached:  # a detached generator is still executing in its thread
            self.pool().submit(result.close).add_done_callback(lambda f: f.exception())
