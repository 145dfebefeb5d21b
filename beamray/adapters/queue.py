"""Beam's ``Queue`` (``SimpleQueue``): a distributed FIFO of cloudpickled values, on a named Ray actor.

The SDK's API and errors (``put`` → True, ``pop``/``peek`` → value or None, ``empty``, ``len``,
``remote`` → NotImplementedError, server failures → ``SimpleQueueInternalServerError``). One addition:
Beam stores ``max_size`` but never checks it; here a ``put`` on a queue holding ``max_size`` items or more
raises ``QueueFullError`` (a ``SimpleQueueInternalServerError``, so existing ``except`` clauses still catch
it) and adds nothing. ``max_size <= 0`` or ``None`` means unbounded. The actor and its persistence are in
``beamray.runtime.kv_actors``. Constructing a Queue touches no Ray; the first call connects.
"""

from __future__ import annotations

import struct
from typing import Any

import cloudpickle

from beamray.adapters import parsing
from beamray.exceptions import BeamrayError

_PUT_HEADER = struct.Struct("<q")  # == beamray.runtime.kv_actors.PUT_HEADER (that module imports Ray)


class SimpleQueueInternalServerError(Exception):
    """The queue's server (here: its actor, or the Redis behind it) failed (Beam's name)."""


class QueueFullError(SimpleQueueInternalServerError, BeamrayError):
    """``put`` on a queue that already holds ``max_size`` items; the value was not added."""


class Queue:
    """A distributed python queue."""

    SimpleQueueInternalServerError = SimpleQueueInternalServerError
    QueueFullError = QueueFullError

    def __init__(self, *, name: str, max_size: int | None = 100) -> None:
        self.name = parsing.parse_store_name("Queue", name)
        self.max_size = max_size
        # put() sends one bytes argument: this header (max_size, 0 = unbounded; kv_actors.PUT_HEADER) + the value
        self._header = _PUT_HEADER.pack(int(max_size) if max_size and max_size > 0 else 0)
        self._methods: tuple[Any, ...] | None = None

    def _actor(self) -> tuple[Any, ...]:
        if self._methods is None:
            from beamray.runtime import kv_actors

            actor = kv_actors.handle("queue", self.name)
            self._methods = (actor.put, actor.pop, actor.peek, actor.size)
        return self._methods

    def _call(self, index: int, *args: Any) -> Any:
        import ray
        from ray.exceptions import RayError

        try:
            return ray.get(self._actor()[index].remote(*args))
        except RayError as exc:
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        from ray.exceptions import RayActorError

        from beamray.runtime import kv_actors

        if isinstance(exc, RayActorError):
            kv_actors.forget("queue", self.name)
            self._methods = None
        cause = getattr(exc, "cause", None) or exc
        raise SimpleQueueInternalServerError(f"Queue {self.name!r}: {type(cause).__name__}: {cause}") from exc

    def put(self, value: Any) -> bool:
        result = self._call(0, self._header + cloudpickle.dumps(value))
        if result is not True:
            raise QueueFullError(
                f"Queue {self.name!r} is full: it holds {result} items and max_size is {self.max_size}; "
                "the value was not added. Pop items first, or use Queue(name=..., max_size=<larger>)."
            )
        return True

    def pop(self) -> Any:
        blob = self._call(1)
        return cloudpickle.loads(blob) if blob else None

    def peek(self) -> Any:
        blob = self._call(2)
        return cloudpickle.loads(blob) if blob else None

    def empty(self) -> bool:
        return self._call(3) == 0

    def __len__(self) -> int:
        return self._call(3)

    def remote(self) -> None:
        raise NotImplementedError

    def __getstate__(self) -> dict[str, Any]:  # a Queue sent to a task looks its actor up there
        return {"name": self.name, "max_size": self.max_size, "_header": self._header, "_methods": None}

    def __repr__(self) -> str:
        return f"Queue(name={self.name!r}, max_size={self.max_size!r})"
