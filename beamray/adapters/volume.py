"""Beam's ``Volume``, ``CloudBucket`` and ``CloudBucketConfig``.

A ``Volume`` is a named directory in beamray's storage, kept by ``beamray.volumes``. Inside a task or
replica that lists it in ``volumes=[…]`` it appears at ``mount_path`` (relative to the working
directory) and at ``/volumes/{name}`` (see ``beamray.runtime.mounts`` for how, and for the consistency
each backend gives).

A ``CloudBucket`` is an existing S3 bucket named ``name``; ``CloudBucketConfig.access_key`` /
``secret_key`` are the *names* of beamray secrets holding the credentials, read inside the task.
Constructing either object does no I/O, as in the SDK.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from typing import Any, Optional

from beamray import storage
from beamray.volumes import get_or_create_volume

_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


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
