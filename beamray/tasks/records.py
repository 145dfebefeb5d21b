"""A task's record and Beam's statuses; results travel as JSON, or cloudpickled under ``{"base64": …}``."""

from __future__ import annotations

import base64
import datetime
import json
from dataclasses import dataclass, field
from typing import Any

import cloudpickle

PENDING, RUNNING, COMPLETE, RETRY = "PENDING", "RUNNING", "COMPLETE", "RETRY"
CANCELLED, TIMEOUT, EXPIRED, FAILED = "CANCELLED", "TIMEOUT", "EXPIRED", "FAILED"
TERMINAL = (COMPLETE, CANCELLED, TIMEOUT, EXPIRED, FAILED)
ALIASES = {"ERROR": FAILED}  # the SDK's TaskStatus.Error


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


def encode_result(value: Any) -> Any:
    """JSON when possible (what the task API shows), else cloudpickle in base64 (the SDK decodes it)."""
    try:
        json.dumps(value)
        return value
    except (TypeError, ValueError):
        return {"base64": base64.b64encode(cloudpickle.dumps(value)).decode()}


def decode_result(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"base64"}:
        return cloudpickle.loads(base64.b64decode(value["base64"]))
    return value


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc).isoformat().replace("+00:00", "Z")
