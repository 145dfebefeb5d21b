"""Task records in the durable store, written behind the task service's event loop.

Every change made within one turn of the loop reaches the store in one write (one SQLite transaction, one
Redis MSET), so a task's PENDING → RUNNING → COMPLETE costs a share of a few writes rather than three
commits. Callers that acknowledge something to a client (a submit, a cancel) wait for ``durable()``, and
side effects that must not run twice (completion callbacks) run only once their record is written.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable

from beamray.store import Store
from beamray.tasks.records import TaskRecord

PREFIX = "tasks/"


class Journal:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._unsaved: dict[str, TaskRecord] = {}
        self._then: list[Callable[[], Any]] = []
        self._written: asyncio.Future | None = None  # resolved when ``_unsaved`` is in the store

    def load(self) -> list[TaskRecord]:
        return [TaskRecord.from_json(raw) for raw in self.store.scan(PREFIX).values()]

    def save(self, record: TaskRecord, then: Callable[[], Any] | None = None) -> None:
        """Write ``record`` soon (its state at write time); run ``then`` once it is written."""
        self._unsaved[record.id] = record
        if then is not None:
            self._then.append(then)
        if self._written is None:
            loop = asyncio.get_running_loop()
            self._written = loop.create_future()
            loop.call_soon(self._write)

    async def durable(self) -> None:
        """Wait until every change saved so far is in the store."""
        if self._written is not None:
            await asyncio.shield(self._written)

    def _write(self) -> None:
        unsaved, then, written = self._unsaved, self._then, self._written
        self._unsaved, self._then, self._written = {}, [], None
        try:
            self.store.put_many({f"{PREFIX}{task_id}": record.to_json() for task_id, record in unsaved.items()})
        except Exception as exc:  # the store is down: waiting callers see why; the next write retries these
            self._unsaved, self._then = {**unsaved, **self._unsaved}, then + self._then
            written.set_exception(exc)
            written.add_done_callback(lambda future: future.exception())  # seen, even when nobody waited
            return
        written.set_result(None)
        for action in then:
            action()
