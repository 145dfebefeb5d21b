"""Task records in the durable store, written behind the task service's event loop, off it.

Every change made while a write is in flight reaches the store in the next write (one SQLite transaction,
one Redis MSET), so a task's PENDING → RUNNING → COMPLETE costs a share of a few writes rather than three
commits. Writes run one at a time on a thread of their own: a slow or stalled store (a Redis without
answers until its socket timeout) never freezes the loop. Callers that acknowledge something to a client
(a submit, a cancel) wait for ``durable()``, and side effects that must not run twice (completion
callbacks) run only once their record is written. A failed write is retried every ``RETRY_S`` until the
store answers again; waiting callers see ``StoreUnavailableError`` at once.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from typing import Any, Callable, Iterable

from beamray.exceptions import StoreUnavailableError
from beamray.store import Store
from beamray.tasks.records import TaskRecord

PREFIX = "tasks/"
RETRY_S = 1.0
_log = logging.getLogger(__name__)


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._unsaved: dict[str, TaskRecord] = {}
        self._then: list[Callable[[], Any]] = []
        self._next: asyncio.Future | None = None  # resolved when ``_unsaved`` is in the store
        self._in_flight: asyncio.Future | None = None  # the write running now
        self._retry: asyncio.TimerHandle | None = None
        self._thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="beamray-journal")

    def load(self) -> list[TaskRecord]:
        return [TaskRecord.from_json(raw) for raw in self.store.scan(PREFIX).values()]

    def save(self, record: TaskRecord, then: Callable[[], Any] | None = None) -> None:
        """Write ``record`` soon (its state at write time); run ``then`` once it is written."""
        self._unsaved[record.id] = record
        if then is not None:
            self._then.append(then)
        if self._next is None:
            loop = asyncio.get_running_loop()
            self._next = loop.create_future()
            if self._in_flight is None and self._retry is None:
                loop.call_soon(self._write)

    def discard(self, task_ids: Iterable[str]) -> None:
        """Forget unwritten records (a submit rolled back): they must never reach the store."""
        for task_id in task_ids:
            self._unsaved.pop(task_id, None)

    async def durable(self) -> None:
        """Wait until every change saved so far is in the store; ``StoreUnavailableError`` if it failed."""
        waiting = self._next or self._in_flight
        if waiting is not None:
            await asyncio.shield(waiting)

    def remove(self, task_ids: list[str]) -> "concurrent.futures.Future[None]":
        """Delete records from the store, on the journal's thread (after the writes before it)."""
        return self._thread.submit(self._delete, [f"{PREFIX}{task_id}" for task_id in task_ids])

    def _delete(self, keys: list[str]) -> None:
        for key in keys:
            self.store.delete(key)

    def _write(self) -> None:
        self._retry = None
        if self._next is None or self._in_flight is not None:
            return
        unsaved, then, done = self._unsaved, self._then, self._next
        self._unsaved, self._then, self._next, self._in_flight = {}, [], None, done
        items = {f"{PREFIX}{task_id}": record.to_json() for task_id, record in unsaved.items()}
        if not items:  # everything was discarded
            self._in_flight = None
            done.set_result(None)
            for action in then:
                action()
            return
        loop = asyncio.get_running_loop()
        write = loop.run_in_executor(self._thread, self.store.put_many, items)
        write.add_done_callback(lambda finished: self._written(finished, unsaved, then, done))

    def _written(self, finished: asyncio.Future, unsaved: dict[str, TaskRecord],
                 then: list[Callable[[], Any]], done: asyncio.Future) -> None:
        self._in_flight = None
        loop = asyncio.get_running_loop()
        error = finished.exception()
        if error is None:
            done.set_result(None)
            for action in then:
                action()
            if self._next is not None:
                self._write()
            return
        _log.warning("the task store did not take %d record(s), retrying in %gs: %s", len(unsaved), RETRY_S, error)
        # Records saved again meanwhile keep their newer state; the rest are written by the retry.
        self._unsaved = {**unsaved, **self._unsaved}
        self._then = then + self._then
        if self._next is None:
            self._next = loop.create_future()
        done.set_exception(StoreUnavailableError(
            f"the task store is unreachable ({type(error).__name__}: {error}); nothing was accepted, try again"))
        done.add_done_callback(lambda future: future.exception())  # seen, even when nobody waited
        self._retry = loop.call_later(RETRY_S, self._write)
