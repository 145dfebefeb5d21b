"""What the task service needs to run one queue version, built by ``beamray.deploy`` from a spec.

The service never imports user code: the spec travels pickled beside this config, and only the queue's
workers unpickle it. The config is stored as JSON with the queue, so a restarted service reloads it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class QueueConfig:
    queue: str  # the version's id (``<name>-v<N>``), the key of its tasks
    kind: str  # taskqueue | function | schedule
    name: str
    stub_id: str
    handler: str  # "module:function", the name of each task's Ray call
    ray_options: dict[str, Any]  # the workers' resources (Ray options)
    runtime_env: dict[str, Any]  # the workers' code (working_dir), image and stores
    timeout: float | None
    retries: int
    ttl: int
    callback_url: str
    max_pending_tasks: int
    workers: int
    min_containers: int
    max_containers: int
    tasks_per_container: int
    keep_warm_seconds: float
    schedule: str = ""  # cron expression, for kind "schedule"
    created_at: float = 0.0
    public_config: dict[str, Any] = field(default_factory=dict)  # the stub config the task API shows

    def to_json(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> "QueueConfig":
        return cls(**json.loads(raw))
