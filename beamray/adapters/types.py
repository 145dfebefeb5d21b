"""Beam's small value types: GPU and Python enums, task policy, autoscaler."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum


class GpuType(str, Enum):
    NoGPU = ""
    Any = "any"
    T4 = "T4"
    L4 = "L4"
    L40 = "L40"
    A10 = "A10"
    A10G = "A10G"
    A100 = "A100"
    A100_40 = "A100-40"
    A100_80 = "A100-80"
    A16 = "A16"
    A30 = "A30"
    A40 = "A40"
    H100 = "H100"
    H200 = "H200"
    GH200 = "GH200"
    B200 = "B200"
    B300 = "B300"
    GAUDI2 = "GAUDI2"
    A4000 = "A4000"
    A5000 = "A5000"
    A6000 = "A6000"
    RTX4000Ada = "RTX4000Ada"
    RTX4090 = "RTX4090"
    RTX5090 = "RTX5090"
    RTX6000 = "RTX6000"
    RTX6000Ada = "RTX6000Ada"
    RTXPro6000 = "RTXPro6000"
    L40S = "L40S"
    V100 = "V100"
    V100_32 = "V100-32"

    def __str__(self) -> str:
        return self.value


class PythonVersion(str, Enum):
    Python3 = "python3"
    Python38 = "python3.8"
    Python39 = "python3.9"
    Python310 = "python3.10"
    Python311 = "python3.11"
    Python312 = "python3.12"

    def __str__(self) -> str:
        return self.value


class TaskStatus(str, Enum):
    Complete = "COMPLETE"
    Error = "ERROR"
    Pending = "PENDING"
    Running = "RUNNING"
    Cancelled = "CANCELLED"
    Retry = "RETRY"
    Timeout = "TIMEOUT"

    def is_complete(self) -> bool:
        return self in (TaskStatus.Complete, TaskStatus.Error, TaskStatus.Cancelled, TaskStatus.Timeout)

    def __str__(self) -> str:
        return self.value


class TaskExitCode:
    SigTerm = -15
    SigKill = -9
    Success = 0
    Error = 1
    ErrorLoadingApp = 2
    Cancelled = 3
    Timeout = 4
    Disconnect = 5


@dataclass
class TaskPolicy:
    """Overrides ``retries``/``timeout`` where non-zero; ``ttl`` is how long a task may wait (seconds)."""

    max_retries: int = 0
    timeout: int = 0
    ttl: int = 0


@dataclass
class Autoscaler:
    max_containers: int = 1
    tasks_per_container: int = 1
    min_containers: int = 0


@dataclass
class QueueDepthAutoscaler(Autoscaler):
    """Scale containers with pending work: one per ``tasks_per_container`` queued tasks."""
