"""The secrets store: Beam's ``beamray secret …`` values, injected into tasks as env vars by name.

Where values live (the locator travels to workers in ``BEAMRAY_SECRETS``; values never do):
- embedded cluster: ``file:$BEAMRAY_HOME/secrets.json``, mode 0600, readable by the local workers;
  every change happens under an exclusive ``flock`` and replaces the file atomically;
- any other cluster: ``kv``, Ray's internal KV (namespace ``beamray_secrets``), which lives in the GCS
  (and in its Redis with GCS fault tolerance) and is reachable only with the cluster's auth token.

Each store also keeps beamray's own private values beside the secrets (the callback signing key):
a file next to ``secrets.json``, or a KV key under ``beamray/`` that no secret name can take.

Files are fsynced before a write counts as done, and one found empty is an error naming it:
making a new one would silently lose the secrets, or break every client holding the old token or key.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import secrets as _random_token
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from beamray import locations, ray_private
from beamray.exceptions import SecretNotFoundError
from beamray.private_files import damaged_message, open_private, private_dirs, read_value, write_private

_KV_NAMESPACE = "beamray_secrets"
_RESERVED_PREFIX = "beamray/"  # KV keys of beamray's own values; "/" is not allowed in a secret name
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# What a private value's holders lose when it is replaced (said when its file is damaged).
_LOST_WITH = {"token": "clients using the old gateway token stop authenticating",
              "signing_key": "output URLs and task callbacks signed with the old key stop verifying"}


@dataclass
class SecretRecord:
    name: str
    value: str
    created_at: float
    updated_at: float


def validate_name(name: str) -> str:
    """A secret becomes an env var: its name must be one (``[A-Za-z_][A-Za-z0-9_]*``)."""
    if not name:
        raise ValueError("Secret name must not be empty.")
    if not _NAME.fullmatch(name):
        raise ValueError(
            f"Invalid secret name {name!r}: it becomes an environment variable, so use letters, digits and "
            "underscores, not starting with a digit (e.g. AWS_ACCESS_KEY)."
        )
    return name


class _FileBackend:
    def __init__(self, path: Path) -> None:
        self.path = path

    @contextlib.contextmanager
    def _lock(self) -> Iterator[None]:
        private_dirs(self.path.parent)
        with open_private(self.path.with_suffix(".lock"), os.O_RDWR | os.O_CREAT) as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextlib.contextmanager
    def _records(self) -> Iterator[dict[str, dict]]:
        """The records under the lock; changes made to them are written back atomically."""
        with self._lock():
            records = self.read()
            snapshot = json.dumps(records, sort_keys=True)
            yield records
            if json.dumps(records, sort_keys=True) != snapshot:
                write_private(self.path, json.dumps(records, indent=2))

    def read(self) -> dict[str, dict]:
        lost = "deleting it loses every secret in it"
        text = read_value(self.path, "The secrets store", lost)
        try:
            records = json.loads(text) if text is not None else {}
        except json.JSONDecodeError as exc:
            raise ValueError(damaged_message(self.path, "The secrets store", f"is not valid JSON ({exc})",
                                             lost)) from exc
        return records

    def get(self, name: str) -> dict | None:
        return self.read().get(name)

    def insert(self, name: str, record: dict) -> bool:
        with self._records() as records:
            if name in records:
                return False
            records[name] = record
            return True

    def update(self, name: str, value: str, now: float) -> dict | None:
        with self._records() as records:
            if name not in records:
                return None
            records[name] = {**records[name], "value": value, "updated_at": now}
            return records[name]

    def remove(self, name: str) -> bool:
        with self._records() as records:
            return records.pop(name, None) is not None

    def private_value(self, name: str, make: Callable[[], str]) -> str:
        """beamray's own value ``name``, stored 0600 beside the secrets; created by ``make`` once."""
        path = self.path.parent / name
        what = f"beamray's {name.replace('_', ' ')} file"
        lost = _LOST_WITH.get(name, "whatever holds the old value stops working")
        value = read_value(path, what, lost)
        if value is not None:
            return value
        with self._lock():
            value = read_value(path, what, lost)
            if value is None:
                value = make()
                write_private(path, value)
            return value


class _KVBackend:
    def __init__(self) -> None:
        self.kv = ray_private.InternalKV(_KV_NAMESPACE)

    def _get(self, key: str) -> dict | None:
        raw = self.kv.get(key)
        return json.loads(raw) if raw else None

    def read(self) -> dict[str, dict]:
        records = {}
        for name in self.kv.keys():
            if name.startswith(_RESERVED_PREFIX):
                continue
            record = self._get(name)
            if record is not None:  # deleted since the listing
                records[name] = record
        return records

    def get(self, name: str) -> dict | None:
        return None if name.startswith(_RESERVED_PREFIX) else self._get(name)

    def insert(self, name: str, record: dict) -> bool:
        return not self.kv.put(name, json.dumps(record).encode(), overwrite=False)

    def update(self, name: str, value: str, now: float) -> dict | None:
        record = self.get(name)
        if record is None:
            return None
        record = {**record, "value": value, "updated_at": now}
        self.kv.put(name, json.dumps(record).encode())
        return record

    def remove(self, name: str) -> bool:
        return not name.startswith(_RESERVED_PREFIX) and self.kv.delete(name)

    def private_value(self, name: str, make: Callable[[], str]) -> str:
        key = f"{_RESERVED_PREFIX}{name}"
        raw = self.kv.get(key)
        if not raw:
            # overwrite=False: when two processes race, the first value stored wins and both read it back.
            self.kv.put(key, make().encode(), overwrite=False)
            raw = self.kv.get(key)
        return raw.decode()


def gateway_token() -> str:
    """The gateway's bearer token: ``BEAMRAY_TOKEN``, else one generated once beside the cluster's secrets."""
    if os.environ.get("BEAMRAY_TOKEN"):
        return os.environ["BEAMRAY_TOKEN"]
    return private_value("token", lambda: _random_token.token_urlsafe(48))


def _backend(locator: str | None = None) -> _FileBackend | _KVBackend:
    locator = locator or os.environ.get("BEAMRAY_SECRETS") or locations.secrets_locator()
    if locator.startswith("file:"):
        return _FileBackend(Path(locator[len("file:"):]))
    from beamray import cluster

    cluster.connect()
    return _KVBackend()


def _not_found(name: str) -> SecretNotFoundError:
    return SecretNotFoundError(f"Secret '{name}' not found. Create it with `beamray secret create {name} VALUE`.")


def list_secrets() -> list[SecretRecord]:
    return [SecretRecord(name=name, **record) for name, record in sorted(_backend().read().items())]


def show(name: str) -> SecretRecord:
    record = _backend().get(name)
    if record is None:
        raise _not_found(name)
    return SecretRecord(name=name, **record)


def create(name: str, value: str) -> SecretRecord:
    validate_name(name)
    now = time.time()
    record = {"value": value, "created_at": now, "updated_at": now}
    if not _backend().insert(name, record):
        raise ValueError(f"Secret '{name}' already exists; change it with `beamray secret modify {name} VALUE`.")
    return SecretRecord(name=name, **record)


def modify(name: str, value: str) -> SecretRecord:
    record = _backend().update(name, value, time.time())
    if record is None:
        raise _not_found(name)
    return SecretRecord(name=name, **record)


def delete(name: str) -> None:
    if not _backend().remove(name):
        raise _not_found(name)


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


def private_value(name: str, make: Callable[[], str]) -> str:
    """beamray's own value ``name`` kept in the secrets' store (never listed as a secret), made once."""
    return _backend().private_value(name, make)
