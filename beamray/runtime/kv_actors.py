"""The Ray side of ``Queue`` and ``Map``: one named, detached, synchronous actor per name.

Actors
    ``beamray:queue:<name>`` and ``beamray:map:<name>`` in namespace ``beamray``; ``lifetime="detached"``,
    ``num_cpus=0``, ``max_concurrency=1`` (a sync actor runs one call at a time, in arrival order, so a
    queue is FIFO and every check-then-act is atomic), ``max_restarts=-1``. Placed on the head node when it
    can be (soft affinity), so that a worker node scaling down does not take the state with it. Every
    process (driver, task, another driver) reaches the same actor by name; handles are cached per process.

Values are cloudpickled by the client (``beamray.adapters``): the actor only ever stores ``bytes`` and
never imports user code.

Persistence
    Without ``BEAMRAY_REDIS_URL`` the contents live in the actor's memory only: they outlive the drivers
    that wrote them (the actor is detached) but not an actor crash, ``beamray cluster down`` or a Ray
    restart. beamray's embedded store under BEAMRAY_HOME is not used for queues and maps.

    With ``BEAMRAY_REDIS_URL`` (or a ``redis://`` ``BEAMRAY_STORE``) set in the process that creates the
    actor, Redis is the one copy and the actor a serialising front for it: every call reads or writes Redis
    before it returns (write-through, nothing buffered), so a restarted actor, or a new cluster after
    ``cluster down && up``, starts from exactly what Redis holds. Keys:

    - ``beamray:queue:<name>``    a Redis list: ``put`` = RPUSH (after an LLEN check, in one Lua script),
      ``pop`` = LPOP, ``peek`` = LINDEX 0, ``len`` = LLEN.
    - ``beamray:map:<name>``      a Redis hash, field = the key, value = the pickled value.
    - ``beamray:map-ttl:<name>``  a sorted set, member = the key, score = its expiry (epoch ms). Redis 7.0
      has no per-field hash TTL, so every Map script first deletes the expired members (HDEL + ZREM) and
      then acts; an expired key is never returned, and is gone from Redis at the next call on that Map.

    The actor's creator fixes its backend: a later driver with another BEAMRAY_REDIS_URL reaches the same
    actor (and its backend) while it lives.
"""

from __future__ import annotations

import heapq
import os
import struct
import threading
import time
from collections import deque
from typing import Any

import ray

from beamray import cluster

QUEUE_PREFIX = "beamray:queue:"
MAP_PREFIX = "beamray:map:"
MAP_TTL_PREFIX = "beamray:map-ttl:"


def durable_url() -> str | None:
    """The Redis that queues and maps write through to, or None (actor memory only)."""
    url = os.environ.get("BEAMRAY_REDIS_URL")
    if not url:
        store = os.environ.get("BEAMRAY_STORE", "")
        url = store if store.startswith(("redis://", "rediss://", "unix://")) else None
    return url or None


def _redis(url: str) -> Any:
    import redis

    return redis.Redis.from_url(url, socket_connect_timeout=5, socket_timeout=30)


# ------------------------------------------------------------------------------------------------ queue

_QUEUE_PUT = """
local n = redis.call('LLEN', KEYS[1])
local limit = tonumber(ARGV[2])
if limit > 0 and n >= limit then return n end
redis.call('RPUSH', KEYS[1], ARGV[1])
return -1
"""


# ``QueueActor.put`` takes ONE argument: the caller's max_size (8 bytes, little-endian, 0 = unbounded) followed
# by the pickled value. Each further Ray argument costs about 35 us of CPU on both sides of every call (7 %).
PUT_HEADER = struct.Struct("<q")


class QueueActor:
    """A FIFO of pickled values. ``put`` returns True, or the current length when the queue is full."""

    def __init__(self, name: str, redis_url: str | None) -> None:
        self._name = name
        self._url = redis_url
        if redis_url:
            self._key = QUEUE_PREFIX + name
            self._redis = _redis(redis_url)
            self._put_script = self._redis.register_script(_QUEUE_PUT)
        else:
            self._items: deque[bytes] = deque()

    def put(self, message: bytes) -> bool | int:
        (max_size,) = PUT_HEADER.unpack_from(message)
        blob = message[PUT_HEADER.size:]
        if self._url:
            length = self._put_script(keys=[self._key], args=[blob, max_size])
            return True if length < 0 else length
        if 0 < max_size <= len(self._items):
            return len(self._items)
        self._items.append(blob)
        return True

    def pop(self) -> bytes | None:
        if self._url:
            return self._redis.lpop(self._key)
        return self._items.popleft() if self._items else None

    def peek(self) -> bytes | None:
        if self._url:
            return self._redis.lindex(self._key, 0)
        return self._items[0] if self._items else None

    def size(self) -> int:
        if self._url:
            return self._redis.llen(self._key)
        return len(self._items)

    def backend(self) -> str:
        return "redis" if self._url else "memory"


# -------------------------------------------------------------------------------------------------- map

# KEYS: hash, ttl zset. ARGV[1]: now (ms). Deletes at most ARGV[2] expired keys, returns how many.
_PURGE = """
local function purge(h, z, now, limit)
  local gone = redis.call('ZRANGEBYSCORE', z, '-inf', now, 'LIMIT', 0, limit)
  if #gone > 0 then
    redis.call('HDEL', h, unpack(gone))
    redis.call('ZREM', z, unpack(gone))
  end
  return #gone
end
"""
_MAP_SET = _PURGE + """
purge(KEYS[1], KEYS[2], ARGV[1], 100)
redis.call('HSET', KEYS[1], ARGV[2], ARGV[3])
if ARGV[4] == '' then redis.call('ZREM', KEYS[2], ARGV[2]) else redis.call('ZADD', KEYS[2], ARGV[4], ARGV[2]) end
return 1
"""
_MAP_GET = _PURGE + """
purge(KEYS[1], KEYS[2], ARGV[1], 100)
local expires = redis.call('ZSCORE', KEYS[2], ARGV[2])
if expires and tonumber(expires) <= tonumber(ARGV[1]) then
  redis.call('HDEL', KEYS[1], ARGV[2]); redis.call('ZREM', KEYS[2], ARGV[2]); return false
end
return redis.call('HGET', KEYS[1], ARGV[2])
"""
_MAP_DELETE = _PURGE + """
purge(KEYS[1], KEYS[2], ARGV[1], 100)
redis.call('ZREM', KEYS[2], ARGV[2])
return redis.call('HDEL', KEYS[1], ARGV[2])
"""
_MAP_PURGE_ALL = _PURGE + """
local total = 0
while true do
  local n = purge(KEYS[1], KEYS[2], ARGV[1], 1000)
  total = total + n
  if n < 1000 then return total end
end
"""

_NEVER = float("inf")


class MapActor:
    """A dict of pickled values with per-key expiry; expired keys are never returned, and are deleted."""

    def __init__(self, name: str, redis_url: str | None) -> None:
        self._name = name
        self._url = redis_url
        if redis_url:
            self._keys = [MAP_PREFIX + name, MAP_TTL_PREFIX + name]
            self._redis = _redis(redis_url)
            self._set, self._get, self._delete, self._purge_all = (
                self._redis.register_script(script) for script in (_MAP_SET, _MAP_GET, _MAP_DELETE, _MAP_PURGE_ALL)
            )
        else:
            self._values: dict[str, tuple[bytes, float]] = {}
            self._expiries: list[tuple[float, str]] = []  # a heap; stale entries are skipped

    # -- memory backend: lazy purge from a heap of (expiry, key)
    def _purge_memory(self, now: float) -> None:
        heap, values = self._expiries, self._values
        while heap and heap[0][0] <= now:
            expires, key = heapq.heappop(heap)
            entry = values.get(key)
            if entry is not None and entry[1] == expires:
                del values[key]
        if len(heap) > 2 * len(values) + 1024:  # overwritten keys leave stale entries behind
            self._expiries = [(entry[1], key) for key, entry in values.items() if entry[1] != _NEVER]
            heapq.heapify(self._expiries)

    def set(self, key: str, blob: bytes, ttl: float) -> bool:
        now = time.time()
        expires = now + ttl if ttl > 0 else _NEVER
        if self._url:
            score = "" if expires == _NEVER else int(expires * 1000)
            self._set(keys=self._keys, args=[int(now * 1000), key, blob, score])
            return True
        self._purge_memory(now)
        self._values[key] = (blob, expires)
        if expires != _NEVER:
            heapq.heappush(self._expiries, (expires, key))
        return True

    def get(self, key: str) -> bytes | None:
        now = time.time()
        if self._url:
            return self._get(keys=self._keys, args=[int(now * 1000), key])
        self._purge_memory(now)
        entry = self._values.get(key)
        return entry[0] if entry is not None else None

    def get_many(self, keys: list[str]) -> list[bytes | None]:
        if self._url:
            self._purge_all(keys=self._keys, args=[int(time.time() * 1000)])
            return self._redis.hmget(self._keys[0], keys) if keys else []
        self._purge_memory(time.time())
        return [entry[0] if (entry := self._values.get(key)) is not None else None for key in keys]

    def delete(self, key: str) -> bool:
        now = time.time()
        if self._url:
            return bool(self._delete(keys=self._keys, args=[int(now * 1000), key]))
        self._purge_memory(now)
        return self._values.pop(key, None) is not None

    def size(self) -> int:
        if self._url:
            self._purge_all(keys=self._keys, args=[int(time.time() * 1000)])
            return self._redis.hlen(self._keys[0])
        self._purge_memory(time.time())
        return len(self._values)

    def keys(self) -> list[str]:
        if self._url:
            self._purge_all(keys=self._keys, args=[int(time.time() * 1000)])
            return [key.decode() for key in self._redis.hkeys(self._keys[0])]
        self._purge_memory(time.time())
        return list(self._values)

    def backend(self) -> str:
        return "redis" if self._url else "memory"


# ---------------------------------------------------------------------------------------------- handles

_ACTOR_CLASSES = {"queue": QueueActor, "map": MapActor}
_remote_classes: dict[str, Any] = {}
_handles: dict[tuple[str, str], Any] = {}
_lock = threading.Lock()


def actor_name(kind: str, name: str) -> str:
    return f"beamray:{kind}:{name}"


def _head_affinity() -> dict[str, Any]:
    """Prefer the head node (soft): it outlives scale-downs. Nothing when there is no head label."""
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    for node in ray.nodes():
        if node.get("Alive") and "node:__internal_head__" in node.get("Resources", {}):
            return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node["NodeID"], soft=True)}
    return {}


def handle(kind: str, name: str) -> Any:
    """This process's handle on the ``kind`` actor called ``name``, created when missing (cached)."""
    cached = _handles.get((kind, name))
    if cached is not None:
        return cached
    with _lock:
        cached = _handles.get((kind, name))
        if cached is not None:
            return cached
        cluster.connect()
        full_name = actor_name(kind, name)
        try:
            actor = ray.get_actor(full_name, namespace=cluster.NAMESPACE)
        except ValueError:
            remote_class = _remote_classes.get(kind)
            if remote_class is None:
                remote_class = _remote_classes[kind] = ray.remote(_ACTOR_CLASSES[kind])
            actor = remote_class.options(
                name=full_name, namespace=cluster.NAMESPACE, lifetime="detached", get_if_exists=True,
                num_cpus=0, max_concurrency=1, max_restarts=-1, max_task_retries=0, **_head_affinity(),
            ).remote(name, durable_url())
        _handles[(kind, name)] = actor
        return actor


def forget(kind: str, name: str) -> None:
    """Drop a cached handle (after the actor died), so that the next call looks it up or creates it."""
    _handles.pop((kind, name), None)
