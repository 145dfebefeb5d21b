"""A task's record and Beam's statuses; results travel as JSON, or cloudpickled under ``{"base64": …}``."""

from __future__ import annotations

import base64
import datetime
import json
import os
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

from beamray.exceptions import TaskTooLargeError

PENDING, RUNNING, COMPLETE, RETRY = "PENDING", "RUNNING", "COMPLETE", "RETRY"
CANCELLED, TIMEOUT, EXPIRED, FAILED = "CANCELLED", "TIMEOUT", "EXPIRED", "FAILED"
TERMINAL = (COMPLETE, CANCELLED, TIMEOUT, EXPIRED, FAILED)
ALIASES = {"ERROR": FAILED}  # the SDK's TaskStatus.Error
# What one task record may hold of arguments, and of result: records live in memory and in the store
# (on KubeRay, the Redis that also backs the GCS), so one caller must not be able to fill them.
MAX_PAYLOAD_BYTES = 16 * 2**20
DEFAULT_RETENTION_S = 7 * 24 * 3600.0


def normalize_status(status: str) -> str:
    status = status.strip().upper()
    status = ALIASES.get(status, status)
    if status not in TERMINAL + (PENDING, RUNNING, RETRY):
        raise ValueError(f"unknown task status {status!r}; one of PENDING, RUNNING, COMPLETE, RETRY, CANCELLED, "
                         "TIMEOUT, EXPIRED, FAILED (ERROR)")
    return status


@dataclass
class TaskRecord:
    id: str
    queue: str  # the task queue version (its Serve-style app name, "<name>-v<N>")
    name: str
    stub_id: str
    status: str
    args: list[Any]
    kwargs: dict[str, Any]
    created_at: float
    updated_at: float
    started_at: float | None = None
    ended_at: float | None = None
    container_id: str = ""
    attempts: int = 0
    result: Any = None
    error: str = ""
    callback_url: str = ""
    outputs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> bytes:
        return json.dumps(vars(self)).encode()  # not asdict(): its deep copy is most of a write's cost

    @classmethod
    def from_json(cls, raw: bytes) -> "TaskRecord":
        return cls(**json.loads(raw))


def retention_seconds() -> float:
    """How long finished tasks stay queryable: ``BEAMRAY_TASK_RETENTION_S``, by default 7 days."""
    value = os.environ.get("BEAMRAY_TASK_RETENTION_S", "")
    try:
        seconds = float(value) if value else DEFAULT_RETENTION_S
    except ValueError:
        seconds = DEFAULT_RETENTION_S
    return seconds if seconds > 0 else DEFAULT_RETENTION_S


def check_payload_size(args: list[Any], kwargs: dict[str, Any]) -> None:
    size = len(json.dumps([args, kwargs]))
    if size > MAX_PAYLOAD_BYTES:
        raise TaskTooLargeError(f"the task's arguments are {_mib(size)}, over the {_mib(MAX_PAYLOAD_BYTES)} a task "
                                "may carry; pass large inputs through a Volume or a CloudBucket")


def encode_result(value: Any) -> Any:
    """JSON when possible (what the task API shows), else cloudpickle in base64 (the SDK decodes it)."""
    try:
        size = len(json.dumps(value))
    except (TypeError, ValueError):
        value = {"base64": base64.b64encode(cloudpickle.dumps(value)).decode()}
        size = len(value["base64"])
    if size > MAX_PAYLOAD_BYTES:
        raise TaskTooLargeError(f"the task's result is {_mib(size)}, over the {_mib(MAX_PAYLOAD_BYTES)} a task "
                                "result may hold; save large results with beam's Output instead")
    return value


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def decode_result(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return cloudpickle.loads(base64.b64decode(value["base64"]))
    return value


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
