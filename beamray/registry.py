"""The deployment registry: every deployed version of every name, in the durable store.

A version's record is JSON (``deployments/<name>/v<N>``); its spec and code archive sit beside it so
that a restarted cluster can bring the deployment back. ``latest`` is the highest running version.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import asdict, dataclass
from typing import Any

from beamray.store import Store, open_store

_PREFIX = "deployments/"


@dataclass
class DeploymentRecord:
    deployment_id: str
    stub_id: str
    name: str
    kind: str  # endpoint | asgi | realtime | taskqueue | function | schedule
    version: int
    app_name: str  # the Ray Serve application (or scheduler entry) behind it
    route_prefix: str
    authorized: bool
    handler: str
    status: str  # running | stopped | failed (a restore could not bring it back; ``error`` says why)
    created_at: float
    url: str = ""
    code_path: str = ""  # the zip archive of the user's code (for restores)
    error: str = ""

    def beam_details(self) -> dict[str, Any]:
        """Beam's ``deploy()`` result dict."""
        return {"deployment_id": self.deployment_id, "stub_id": self.stub_id, "status": "accepted",
                "deployment_name": self.name, "invoke_url": self.url, "version": self.version, "warning": "",
                "rollout_action": "replace"}


# Pickled specs live apart from the records, so listing records (the gateway's route refresh) reads
# records only. Stores written before kept them beside the records; those are still read.
_BLOBS = "deployment-blobs/"


def _key(name: str, version: int, part: str = "", prefix: str = _PREFIX) -> str:
    return f"{prefix}{name}/v{version:06d}{part}"


def new_record(*, name: str, kind: str, version: int, authorized: bool, handler: str, gateway_url: str,
               ) -> DeploymentRecord:
    route = f"/{kind}/{name}/v{version}"
    stub_id = str(uuid.uuid4())
    url = f"{gateway_url}/{kind}/public/{stub_id}" if not authorized else f"{gateway_url}{route}"
    return DeploymentRecord(
        deployment_id=str(uuid.uuid4()), stub_id=stub_id, name=name, kind=kind, version=version,
        app_name=f"{name}-v{version}", route_prefix=route, authorized=authorized, handler=handler,
        status="running", created_at=time.time(), url=url,
    )


class Registry:
    def __init__(self, store: Store | None = None) -> None:
        self.store = store or open_store()

    def records(self) -> list[DeploymentRecord]:
        found = self.store.scan(_PREFIX)
        return sorted((DeploymentRecord(**json.loads(value)) for key, value in found.items()
                       if key.count("/") == 2 and key.rsplit("/", 1)[1].startswith("v") and "." not in key),
                      key=lambda record: (record.name, record.version))

    def next_version(self, name: str) -> int:
        versions = [record.version for record in self.records() if record.name == name]
        return max(versions, default=0) + 1

    def save(self, record: DeploymentRecord, spec_blob: bytes | None = None, launch_blob: bytes | None = None
             ) -> None:
        """Store a record; with its pickled spec (for containers) and launch spec (for restores) on deploy."""
        if spec_blob is not None:
            self.store.put(_key(record.name, record.version, ".spec", _BLOBS), spec_blob)
        if launch_blob is not None:
            self.store.put(_key(record.name, record.version, ".launch", _BLOBS), launch_blob)
        self.store.put(_key(record.name, record.version), json.dumps(asdict(record)).encode())

    def spec_blob(self, record: DeploymentRecord) -> bytes | None:
        return self._blob(record, ".spec")

    def launch_blob(self, record: DeploymentRecord) -> bytes | None:
        """The spec without user code (``specs.without_user_code``): unpickles where the code cannot load."""
        return self._blob(record, ".launch")

    def _blob(self, record: DeploymentRecord, part: str) -> bytes | None:
        found = self.store.get(_key(record.name, record.version, part, _BLOBS))
        return found if found is not None else self.store.get(_key(record.name, record.version, part))

    def remove(self, record: DeploymentRecord) -> None:
        for part in (".spec", ".launch"):
            self.store.delete(_key(record.name, record.version, part, _BLOBS))
            self.store.delete(_key(record.name, record.version, part))
        self.store.delete(_key(record.name, record.version))

    def find(self, identifier: str) -> list[DeploymentRecord]:
        """Records matching a deployment id (or a unique prefix of one, as listed), stub id, ``name`` (all
        versions) or ``name:vN`` / ``name/vN``."""
        records = self.records()
        exact = [r for r in records if identifier in (r.deployment_id, r.stub_id, r.app_name)]
        if exact:
            return exact
        by_prefix = [r for r in records if len(identifier) >= 6 and r.deployment_id.startswith(identifier)]
        if len({r.deployment_id for r in by_prefix}) == 1:  # the short id `deployment list` shows
            return by_prefix
        for separator in (":v", "/v"):
            name, _, version = identifier.rpartition(separator)
            if name and version.isdigit():
                return [r for r in records if r.name == name and r.version == int(version)]
        return [r for r in records if r.name == identifier]

    def latest(self, name: str, kind: str | None = None) -> DeploymentRecord | None:
        running = [r for r in self.records() if r.name == name and r.status == "running"
                   and (kind is None or r.kind == kind)]
        return running[-1] if running else None
