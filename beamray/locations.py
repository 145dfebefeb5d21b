"""Where beamray's state lives, in one place: the secrets, the durable store, volumes and outputs, and
the settings a worker process needs to find them.

Only locators travel to workers (a path, a URL, a backend name), never a value. On the embedded cluster
everything lives under ``BEAMRAY_HOME``; on any other the secrets are in Ray's internal KV, the store in
Redis (``BEAMRAY_REDIS_URL``) or the KV, and storage wherever ``BEAMRAY_STORAGE_URL`` says.
"""

from __future__ import annotations

import os
import urllib.parse

from beamray import config

# Storage settings a worker needs besides the URL (no credentials: nodes bring their own).
_STORAGE_SETTINGS = ("BEAMRAY_VOLUMES_ROOT", "BEAMRAY_S3_ENDPOINT_URL", "BEAMRAY_S3_ADDRESSING_STYLE", "AWS_REGION",
                     "AWS_DEFAULT_REGION", "BEAMRAY_VOLUME_SYNC_INTERVAL")


def is_embedded() -> bool:
    """Whether this process uses the embedded local cluster (no address configured)."""
    return config.configured_address() is None


def secrets_locator() -> str:
    """Where this cluster's secrets are: ``file:<BEAMRAY_HOME>/secrets.json`` (embedded) or ``kv``."""
    return f"file:{config.home() / 'secrets.json'}" if is_embedded() else "kv"


def store_locator() -> str:
    """Where deployments and task records are: Redis, ``sqlite:<BEAMRAY_HOME>/store.db`` (embedded) or ``raykv``."""
    if os.environ.get("BEAMRAY_REDIS_URL"):
        return os.environ["BEAMRAY_REDIS_URL"]
    return f"sqlite:{config.home() / 'store.db'}" if is_embedded() else "raykv"


def storage_url() -> str:
    """Where volumes and outputs are: ``BEAMRAY_STORAGE_URL`` (a directory or ``s3://…``), else under the home."""
    return os.environ.get("BEAMRAY_STORAGE_URL") or str(config.home() / "storage")


def storage_settings() -> dict[str, str]:
    """The storage settings a worker needs, with the URL pinned (a worker's own default would differ)."""
    found = {name: os.environ[name] for name in _STORAGE_SETTINGS if os.environ.get(name)}
    found["BEAMRAY_STORAGE_URL"] = storage_url()
    return found


def worker_settings() -> dict[str, str]:
    """What every worker process needs to find this driver's state: its home, secrets, store and storage.

    A process that was itself given locators passes the same ones on: a Ray job on the embedded head
    has an address (so it would count as remote) but inherits the head's own locators, which are the
    ones its gateway and the other deployments use.
    """
    return {"BEAMRAY_HOME": str(config.home()),
            "BEAMRAY_SECRETS": os.environ.get("BEAMRAY_SECRETS") or secrets_locator(),
            "BEAMRAY_STORE": os.environ.get("BEAMRAY_STORE") or worker_store_locator(), **storage_settings()}


def worker_store_locator() -> str:
    """``store_locator()`` as workers receive it. Runtime envs are visible through Ray's state API, so a
    Redis URL with a password is not passed: ``redis-env:BEAMRAY_REDIS_URL`` has the worker read the
    same variable from its own environment (every KubeRay Pod sets it; an embedded head's workers
    inherit it from ``beamray cluster up``)."""
    locator = store_locator()
    if locator.startswith(("redis://", "rediss://")) and urllib.parse.urlsplit(locator).password:
        return "redis-env:BEAMRAY_REDIS_URL"
    return locator


def actor_settings() -> dict[str, str]:
    """What beamray's own actors and containers need in their environment: the worker settings and the
    gateway port."""
    return {**worker_settings(), "BEAMRAY_HTTP_PORT": str(config.http_port())}
