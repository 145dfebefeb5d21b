"""The volume registry: named directories in beamray's storage, and their records.

A volume is ``volumes/{name}/…`` in the storage backend (``beamray.storage``) with a record at
``volume-meta/{name}.json``. Beam's ``Volume`` objects (``adapters/volume.py``) create theirs on first
use; ``runtime/mounts.py`` makes them visible in tasks and replicas; the CLI lists and deletes them.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass

from beamray import storage

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")

def validate_volume_name(name: str) -> str:
    if not isinstance(name, str) or not _VOLUME_NAME.fullmatch(name) or ".." in name:
        raise ValueError(
            f"Invalid volume name {name!r}: use 1-63 letters, digits, '.', '_' or '-', starting with a letter "
            "or digit (e.g. model-weights)."
        )
    return name


@dataclass(frozen=True)
class VolumeRecord:
    """A volume as ``beamray volume list --json`` prints it (times are unix seconds)."""

    name: str
    id: str
    created_at: float
    updated_at: float


def _meta_key(name: str) -> str:
    return f"volume-meta/{name}.json"


def data_prefix(name: str) -> str:
    return f"volumes/{validate_volume_name(name)}"


def get_volume(name: str, store: storage.Storage | None = None) -> VolumeRecord | None:
    store = store or storage.get_storage()
    validate_volume_name(name)
    try:
        return VolumeRecord(**json.loads(store.read_bytes(_meta_key(name))))
    except FileNotFoundError:
        return None


def get_or_create_volume(name: str, store: storage.Storage | None = None) -> tuple[VolumeRecord, bool]:
    """The volume ``name``, created when missing; the flag says whether this call created it."""
    store = store or storage.get_storage()
    existing = get_volume(name, store)
    if existing is not None:
        return existing, False
    now = time.time()
    record = VolumeRecord(name=name, id=str(uuid.uuid4()), created_at=now, updated_at=now)
    body = json.dumps(asdict(record)).encode()
    if isinstance(store, storage.LocalStorage):
        try:
            with storage.atomic_open(store.local_path(_meta_key(name)), "xb") as handle:
                handle.write(body)
        except FileExistsError:  # another process created it first: theirs is the volume
            return get_volume(name, store), False  # type: ignore[return-value]
    else:
        try:  # a conditional PUT: of two concurrent creators exactly one wins
            store.client.put_object(Bucket=store.bucket, Key=store._key(_meta_key(name)), Body=body,
                                    IfNoneMatch="*")
        except Exception as exc:
            error = getattr(exc, "response", {}) or {}
            code = str(error.get("Error", {}).get("Code", ""))
            status = error.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return get_volume(name, store), False  # type: ignore[return-value]
            if code not in ("NotImplemented", "InvalidArgument", "InvalidRequest") and status != 501:
                raise
            store.write_bytes(_meta_key(name), body)  # a server without conditional writes
    store.makedirs(data_prefix(name))
    return record, True


def list_volumes(store: storage.Storage | None = None) -> list[VolumeRecord]:
    store = store or storage.get_storage()
    records = []
    for info in store.list("volume-meta"):
        try:
            records.append(VolumeRecord(**json.loads(store.read_bytes(info.key))))
        except (FileNotFoundError, ValueError, TypeError):
            continue  # deleted meanwhile, or not ours
    return sorted(records, key=lambda record: record.name)


def delete_volume(name: str, store: storage.Storage | None = None) -> int:
    """Delete the volume and every file in it; returns how many files went. Unknown → ValueError."""
    store = store or storage.get_storage()
    if get_volume(name, store) is None:
        raise ValueError(f"Volume '{name}' not found. `beamray volume list` shows the existing ones.")
    removed = store.delete_prefix(data_prefix(name))
    store.delete(_meta_key(name))
    return removed
