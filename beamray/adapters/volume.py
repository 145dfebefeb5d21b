"""Beam's ``Volume``, ``CloudBucket`` and ``CloudBucketConfig``, and the volume registry behind the CLI.

A ``Volume`` is a named directory in beamray's storage (``beamray.storage``): ``volumes/{name}/…`` with a
record at ``volume-meta/{name}.json``. Inside a task or replica that lists it in ``volumes=[…]`` it
appears at ``mount_path`` (relative to the working directory) and at ``/volumes/{name}`` (see
``beamray.runtime.mounts`` for how, and for the consistency each backend gives).

A ``CloudBucket`` is an existing S3 bucket named ``name``; ``CloudBucketConfig.access_key`` /
``secret_key`` are the *names* of beamray secrets holding the credentials, read inside the task.
Constructing either object does no I/O, as in the SDK.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any, Optional

from beamray import storage

_VOLUME_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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


class Volume:
    """A persistent directory shared by every task and replica that mounts it (Beam's ``Volume``).

    ``name``: the volume (created on first use). ``mount_path``: where the handler sees it; a relative
    path is relative to the task's working directory. It is also at ``/volumes/{name}``.
    """

    def __init__(self, name: str, mount_path: str) -> None:
        self.name = name
        self.ready = False
        self.volume_id: Optional[str] = None
        self.mount_path = mount_path

    def get_or_create(self) -> bool:
        """Create the volume if needed; sets ``ready`` and ``volume_id`` and returns True (the SDK's)."""
        record, _ = get_or_create_volume(self.name)
        self.ready = True
        self.volume_id = record.id
        return True

    def export(self) -> dict[str, Any]:
        return {"id": self.volume_id, "name": self.name, "mount_path": self.mount_path}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, mount_path={self.mount_path!r})"


@dataclass
class CloudBucketConfig:
    """Configuration for a cloud bucket.

    ``read_only``: the task sees the bucket's files but its changes are never uploaded (files are
    mode 0444). ``force_path_style``: path-style addressing (MinIO, some S3-compatible servers).
    ``access_key`` / ``secret_key``: names of beamray secrets holding the credentials (None: the node's
    own AWS credentials). ``endpoint``: the S3 endpoint URL (None: AWS). ``region``: the bucket's region.
    """

    read_only: bool = False
    force_path_style: bool = False
    access_key: Optional[str] = None
    secret_key: Optional[str] = None
    endpoint: Optional[str] = None
    region: Optional[str] = None


class CloudBucket(Volume):
    """An existing S3(-compatible) bucket, ``name`` being the bucket's name, mounted at ``mount_path``."""

    def __init__(self, name: str, mount_path: str, config: CloudBucketConfig) -> None:
        super().__init__(name, mount_path)
        self.config = config

    def get_or_create(self) -> bool:
        return True

    def export(self) -> dict[str, Any]:
        exported = super().export()
        exported["config"] = {"bucket_name": self.name, **asdict(self.config)}
        return exported

    def client(self) -> Any:
        """A boto3 client for this bucket, credentials read from the secrets store by name."""
        from beamray import secrets

        access_key = secrets.load(self.config.access_key) if self.config.access_key else None
        secret_key = secrets.load(self.config.secret_key) if self.config.secret_key else None
        return storage.s3_client(endpoint_url=self.config.endpoint, region=self.config.region,
                                 access_key=access_key, secret_key=secret_key,
                                 force_path_style=True if self.config.force_path_style else None,
                                 storage_env=False)

    def store(self) -> storage.S3Storage:
        if not _BUCKET_NAME.fullmatch(self.name or ""):
            raise ValueError(f"CloudBucket name {self.name!r} must be the S3 bucket's name (e.g. my-uploads).")
        return storage.S3Storage(self.name, "", client=self.client())
