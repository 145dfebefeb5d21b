"""The secrets store: Beam's ``beamray secret …`` values, injected into tasks as env vars by name.

Where values live (the locator travels to workers in ``BEAMRAY_SECRETS``; values never do):
- embedded cluster: ``file:$BEAMRAY_HOME/secrets.json``, mode 0600, readable by the local workers;
- any other cluster: ``kv``, Ray's internal KV (namespace ``beamray_secrets``), which lives in the GCS
  (and in its Redis with GCS fault tolerance) and is reachable only with the cluster's auth token.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from beamray.exceptions import SecretNotFoundError

_KV_NAMESPACE = "beamray_secrets"


@dataclass
class SecretRecord:
    name: str
    value: str
    created_at: float
    updated_at: float


def backend_locator() -> str:
    """Which store this driver's cluster uses, as a string a worker can open."""
    from beamray import cluster, config

    return f"file:{config.home() / 'secrets.json'}" if cluster.is_embedded() else "kv"


class _FileBackend:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _locked(self) -> Iterator[dict[str, dict]]:
        lock_path = self.path.with_suffix(".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            records = json.loads(self.path.read_text()) if self.path.exists() else {}
            snapshot = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != snapshot:
                from beamray.config import write_private

                write_private(self.path, json.dumps(records, indent=2))

    def read(self) -> dict[str, dict]:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def write(self, name: str, record: dict | None) -> None:
        with self._locked() as records:
            if record is None:
                records.pop(name, None)
            else:
                records[name] = record


class _KVBackend:
    def read(self) -> dict[str, dict]:
        from ray.experimental import internal_kv

        keys = internal_kv._internal_kv_list(b"", namespace=_KV_NAMESPACE)
        return {key.decode(): json.loads(internal_kv._internal_kv_get(key, namespace=_KV_NAMESPACE))
                for key in keys}

    def write(self, name: str, record: dict | None) -> None:
        from ray.experimental import internal_kv

        if record is None:
            internal_kv._internal_kv_del(name.encode(), namespace=_KV_NAMESPACE)
        else:
            internal_kv._internal_kv_put(name.encode(), json.dumps(record).encode(), overwrite=True,
                                         namespace=_KV_NAMESPACE)


def _backend(locator: str | None = None) -> _FileBackend | _KVBackend:
    locator = locator or os.environ.get("BEAMRAY_SECRETS") or backend_locator()
    if locator.startswith("file:"):
        return _FileBackend(Path(locator[len("file:"):]))
    from beamray import cluster

    cluster.connect()
    return _KVBackend()


def list_secrets() -> list[SecretRecord]:
    return [SecretRecord(name=name, **record) for name, record in sorted(_backend().read().items())]


def show(name: str) -> SecretRecord:
    record = _backend().read().get(name)
    if record is None:
        raise SecretNotFoundError(f"Secret '{name}' not found. Create it with `beamray secret create {name} VALUE`.")
    return SecretRecord(name=name, **record)


def create(name: str, value: str) -> SecretRecord:
    backend = _backend()
    if name in backend.read():
        raise ValueError(f"Secret '{name}' already exists; change it with `beamray secret modify {name} VALUE`.")
    now = time.time()
    backend.write(name, {"value": value, "created_at": now, "updated_at": now})
    return show(name)


def modify(name: str, value: str) -> SecretRecord:
    record = show(name)
    _backend().write(name, {"value": value, "created_at": record.created_at, "updated_at": time.time()})
    return show(name)


def delete(name: str) -> None:
    show(name)
    _backend().write(name, None)


def load_many(names: tuple[str, ...] | list[str]) -> dict[str, str]:
    """Values for ``names`` (inside a task); a missing one is an error naming it."""
    records = _backend().read()
    missing = [name for name in names if name not in records]
    if missing:
        raise SecretNotFoundError(
            f"Secret(s) {', '.join(missing)} not found. Create them with `beamray secret create NAME VALUE`."
        )
    return {name: records[name]["value"] for name in names}


def load(name: str) -> str:
    return load_many([name])[name]
