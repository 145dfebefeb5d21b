"""A small durable key-value store for beamray's own records (deployments, tasks, queues).

Three backends, chosen by a locator the driver computes and workers receive in ``BEAMRAY_STORE``:
- ``redis://…`` when ``BEAMRAY_REDIS_URL`` is set (production; survives everything Redis survives);
- ``sqlite:<path>`` under BEAMRAY_HOME for the embedded cluster (survives ``cluster down && up``);
- ``raykv`` (Ray's internal KV) for a remote cluster without Redis: as durable as its GCS.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from pathlib import Path
from typing import Protocol

from beamray import locations, ray_private
from beamray.private_files import open_private, tighten


class Store(Protocol):
    def get(self, key: str) -> bytes | None: ...
    def put(self, key: str, value: bytes) -> None: ...
    def put_many(self, items: dict[str, bytes]) -> None: ...
    def delete(self, key: str) -> None: ...
    def scan(self, prefix: str) -> dict[str, bytes]: ...


class SqliteStore:
    def __init__(self, path: str) -> None:
        with open_private(Path(path), os.O_RDWR | os.O_CREAT):  # task arguments and results live in it
            pass
        self._connection = sqlite3.connect(path, timeout=30, check_same_thread=False, isolation_level=None)
        self._connection.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: durable across process and cluster crashes (not power loss), without an fsync per write.
        self._connection.execute("PRAGMA synchronous=NORMAL")
        self._connection.execute("CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value BLOB NOT NULL)")
        for suffix in ("-wal", "-shm"):
            tighten(Path(path + suffix))
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            row = self._connection.execute("SELECT value FROM kv WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def put(self, key: str, value: bytes) -> None:
        with self._lock:
            self._connection.execute("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", (key, value))

    def put_many(self, items: dict[str, bytes]) -> None:
        """All of ``items`` in one transaction (one commit instead of one per key)."""
        with self._lock, self._connection:
            self._connection.execute("BEGIN")
            self._connection.executemany("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)", items.items())

    def delete(self, key: str) -> None:
        with self._lock:
            self._connection.execute("DELETE FROM kv WHERE key = ?", (key,))

    def scan(self, prefix: str) -> dict[str, bytes]:
        upper = prefix + "\U0010ffff"
        with self._lock:
            rows = self._connection.execute("SELECT key, value FROM kv WHERE key >= ? AND key < ?",
                                            (prefix, upper)).fetchall()
        return dict(rows)


# A Redis that stops answering must not hold a caller forever: beamray's callers are event loops (the
# task service, the gateway). Commands fail after these; the client reconnects by itself once Redis is back.
REDIS_CONNECT_TIMEOUT_S = 2.0
REDIS_SOCKET_TIMEOUT_S = 5.0


class RedisStore:
    """Keys under ``beamray:``, plus one sorted set naming them all (``beamray:index``).

    A prefix scan reads the index by range (``ZRANGEBYLEX``: log N + what matches) instead of SCAN,
    which walks every key of the Redis database; every write updates key and index in one transaction.
    Keys written before the index existed are indexed once, by the first process that opens the store.
    """

    _INDEX = "index"
    _INDEXED = "index-complete"

    def __init__(self, url: str) -> None:
        import redis

        self._client = redis.Redis.from_url(url, socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
                                            socket_timeout=REDIS_SOCKET_TIMEOUT_S, health_check_interval=10)
        self._prefix = "beamray:"
        self._index = self._prefix + self._INDEX
        self._index_checked = False

    def get(self, key: str) -> bytes | None:
        return self._client.get(self._prefix + key)

    def put(self, key: str, value: bytes) -> None:
        self.put_many({key: value})

    def put_many(self, items: dict[str, bytes]) -> None:
        with self._client.pipeline(transaction=True) as batch:
            batch.mset({self._prefix + key: value for key, value in items.items()})
            batch.zadd(self._index, dict.fromkeys(items, 0))
            batch.execute()

    def delete(self, key: str) -> None:
        with self._client.pipeline(transaction=True) as batch:
            batch.delete(self._prefix + key)
            batch.zrem(self._index, key)
            batch.execute()

    def scan(self, prefix: str) -> dict[str, bytes]:
        self._build_index_once()
        keys = [key.decode() for key in self._client.zrangebylex(
            self._index, b"[" + prefix.encode(), b"[" + prefix.encode() + b"\xff")]
        values = self._client.mget([self._prefix + key for key in keys]) if keys else []
        return {key: value for key, value in zip(keys, values) if value is not None}

    def _build_index_once(self) -> None:
        """Index the keys a beamray without the index wrote (SCAN, once per Redis database)."""
        if self._index_checked or self._client.exists(self._prefix + self._INDEXED):
            self._index_checked = True
            return
        skip = {self._index.encode(), (self._prefix + self._INDEXED).encode()}
        start = len(self._prefix)
        names = [key[start:].decode() for key in self._client.scan_iter(match=self._prefix + "*", count=1000)
                 if key not in skip]
        for first in range(0, len(names), 1000):
            self._client.zadd(self._index, dict.fromkeys(names[first:first + 1000], 0))
        self._client.set(self._prefix + self._INDEXED, b"1")
        self._index_checked = True


class RayKVStore:
    def __init__(self) -> None:
        self.kv = ray_private.InternalKV("beamray_store")

    def get(self, key: str) -> bytes | None:
        return self.kv.get(key)

    def put(self, key: str, value: bytes) -> None:
        self.kv.put(key, value)

    def put_many(self, items: dict[str, bytes]) -> None:
        for key, value in items.items():
            self.put(key, value)

    def delete(self, key: str) -> None:
        self.kv.delete(key)

    def scan(self, prefix: str) -> dict[str, bytes]:
        found = {key: self.kv.get(key) for key in self.kv.keys(prefix)}
        return {key: value for key, value in found.items() if value is not None}


_opened: dict[str, Store] = {}


def open_store(where: str | None = None) -> Store:
    """The store named by ``where``, ``BEAMRAY_STORE``, or this driver's default; one per process."""
    where = where or os.environ.get("BEAMRAY_STORE") or locations.store_locator()
    if where.startswith("redis-env:"):  # a worker: the URL (and its password) is in its own environment
        variable = where[len("redis-env:"):]
        where = os.environ.get(variable, "")
        if not where:
            raise ValueError(f"{variable} is not set on this node; set it wherever the cluster's nodes start "
                             "(`beamray cluster up`, or the RayCluster's Pods)")
    if where not in _opened:
        if where.startswith(("redis://", "rediss://", "unix://")):
            _opened[where] = RedisStore(where)
        elif where.startswith("sqlite:"):
            _opened[where] = SqliteStore(where[len("sqlite:"):])
        elif where == "raykv":
            from beamray import cluster

            cluster.connect()
            _opened[where] = RayKVStore()
        else:
            raise ValueError(f"unknown store {where!r}: expected redis://…, sqlite:<path> or raykv")
    return _opened[where]
