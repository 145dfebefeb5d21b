"""The task journal: record changes written behind, in one transaction per loop turn, callbacks after."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from beamray.exceptions import StoreUnavailableError
from beamray.store import SqliteStore
from beamray.tasks import journal as journal_module
from beamray.tasks.journal import Journal
from beamray.tasks.records import PENDING, RUNNING, TaskRecord


def _record(task_id: str) -> TaskRecord:
    return TaskRecord(id=task_id, queue="q-v1", name="q", stub_id="stub", status=PENDING, args=[], kwargs={"x": 1},
                      created_at=1.0, updated_at=1.0)


def test_changes_of_one_loop_turn_are_written_together_and_callbacks_run_after(tmp_path):
    store = SqliteStore(str(tmp_path / "store.db"))
    journal = Journal(store)
    ran = []

    async def scenario():
        first, second = _record("a"), _record("b")
        journal.save(first)
        journal.save(second, then=lambda: ran.append(store.get("tasks/b") is not None))
        first.status = RUNNING  # changed before the write: the write holds the latest state
        assert store.get("tasks/a") is None and ran == []
        await journal.durable()

    asyncio.run(scenario())
    assert ran == [True]
    assert [record.status for record in sorted(Journal(store).load(), key=lambda r: r.id)] == [RUNNING, PENDING]


def test_a_failed_write_is_reported_and_retried_with_the_next_one(tmp_path):
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    journal = Journal(store)
    ran = []

    async def scenario():
        store._connection.close()  # the store fails, as a full disk or a lost connection would
        journal.save(_record("a"), then=lambda: ran.append("a"))
        with pytest.raises(StoreUnavailableError, match="unreachable"):
            await journal.durable()
        assert ran == []
        store._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        journal.save(_record("b"))
        await journal.durable()

    asyncio.run(scenario())
    assert ran == ["a"]
    assert sorted(record.id for record in Journal(SqliteStore(path)).load()) == ["a", "b"]


def test_a_failed_write_is_retried_by_itself_once_the_store_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(journal_module, "RETRY_S", 0.05)
    path = str(tmp_path / "store.db")
    store = SqliteStore(path)
    journal = Journal(store)

    async def scenario():
        store._connection.close()
        journal.save(_record("a"))
        with pytest.raises(StoreUnavailableError):
            await journal.durable()
        store._connection = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        for _ in range(100):  # nothing else is saved: the retry alone must write it
            await asyncio.sleep(0.02)
            if store.get("tasks/a") is not None:
                return
        raise AssertionError("the failed record was never written")

    asyncio.run(scenario())


def test_discarded_records_never_reach_the_store(tmp_path):
    store = SqliteStore(str(tmp_path / "store.db"))
    journal = Journal(store)

    async def scenario():
        journal.save(_record("a"))
        journal.save(_record("b"))
        journal.discard(["a"])
        await journal.durable()

    asyncio.run(scenario())
    assert [record.id for record in Journal(store).load()] == ["b"]


def test_writes_leave_the_event_loop_free(tmp_path):
    """A store that takes its time (a Redis near its socket timeout) must not stall the loop."""
    store = SqliteStore(str(tmp_path / "store.db"))
    slow_put = store.put_many

    def put_many(items):
        import time

        time.sleep(0.5)
        slow_put(items)

    store.put_many = put_many
    journal = Journal(store)

    async def scenario():
        journal.save(_record("a"))
        ticks = 0
        writing = asyncio.ensure_future(journal.durable())
        while not writing.done():
            await asyncio.sleep(0.01)
            ticks += 1
        await writing
        return ticks

    assert asyncio.run(scenario()) >= 20
