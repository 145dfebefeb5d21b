"""Beam's ``Map``: a distributed dict of cloudpickled values with per-key TTLs, on a named Ray actor.

The SDK's API: ``set(key, value, ttl=604800)`` → True, or ``ValueError`` with Beam's server messages when
the pickled value is over 1 MiB or the TTL over a week; ``get``/``m[k]`` → value or None (never KeyError);
``m[k] = v``; ``del m[k]`` → KeyError when missing; ``len``; iteration over the keys; ``items()``. A ``ttl``
of 0 or less never expires (as Redis ``SET`` with no expiry in Beam's server). Keys are strings (Beam's
wire type). An actor or Redis failure raises ``ClusterError`` naming the map. The actor and its
persistence are in ``beamray.runtime.kv_actors``. Constructing a Map touches no Ray.
"""

from __future__ import annotations

from typing import Any, Iterator

import cloudpickle

from beamray.adapters import parsing
from beamray.exceptions import ClusterError

MAX_VALUE_BYTES = 2**20 + 13  # Beam's server: 1 MiB plus cloudpickle's header
MAX_TTL_SECONDS = 7 * 24 * 3600
_ITEMS_BATCH = 64


class Map:
    """A distributed python dictionary."""

    def __init__(self, *, name: str) -> None:
        self.name = parsing.parse_store_name("Map", name)
        self._actor: Any = None

    def _call(self, method: str, *args: Any) -> Any:
        import ray
        from ray.exceptions import RayActorError, RayError

        from beamray.runtime import kv_actors

        try:
            if self._actor is None:
                self._actor = kv_actors.handle("map", self.name)
            return ray.get(getattr(self._actor, method).remote(*args))
        except RayError as exc:
            if isinstance(exc, RayActorError):
                kv_actors.forget("map", self.name)
                self._actor = None
            cause = getattr(exc, "cause", None) or exc
            raise ClusterError(f"Map {self.name!r} failed: {type(cause).__name__}: {cause}") from exc

    def set(self, key: str, value: Any, ttl: int = 604800) -> bool:
        _check_key(key)
        blob = cloudpickle.dumps(value)
        if len(blob) > MAX_VALUE_BYTES:
            raise ValueError("Value cannot be larger than 1 MiB")
        if ttl > MAX_TTL_SECONDS:
            raise ValueError("TTL cannot be longer than 1 week")
        return self._call("set", key, blob, ttl)

    def get(self, key: str) -> Any:
        _check_key(key)
        blob = self._call("get", key)
        return cloudpickle.loads(blob) if blob is not None else None

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def __getitem__(self, key: str) -> Any:
        return self.get(key)

    def __delitem__(self, key: str) -> None:
        _check_key(key)
        if not self._call("delete", key):
            raise KeyError(key)

    def __len__(self) -> int:
        return self._call("size")

    def __iter__(self) -> Iterator[str]:
        return iter(self._call("keys"))

    def items(self) -> Iterator[tuple[str, Any]]:
        """(key, value) for the keys present now; values are fetched in batches as the caller iterates."""
        keys = self._call("keys")

        def generate() -> Iterator[tuple[str, Any]]:
            for start in range(0, len(keys), _ITEMS_BATCH):
                batch = keys[start:start + _ITEMS_BATCH]
                for key, blob in zip(batch, self._call("get_many", batch)):
                    if blob is not None:  # deleted or expired since the keys were listed
                        yield key, cloudpickle.loads(blob)

        return generate()

    def __getstate__(self) -> dict[str, Any]:  # a Map sent to a task looks its actor up there
        return {"name": self.name, "_actor": None}

    def __repr__(self) -> str:
        return f"Map(name={self.name!r})"


def _check_key(key: Any) -> None:
    if not isinstance(key, str):
        raise TypeError(f"Map keys are strings (as in Beam), got {type(key).__name__}: {key!r}")
