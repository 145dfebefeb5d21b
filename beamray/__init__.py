"""beamray: Beam's decorators and data types, run on Ray.

``import beamray as beam`` (or ``beamray run app.py``, where ``import beam`` resolves here) gives an
unchanged Beam program the names below. Importing starts no Ray; the cluster is reached on first use.
"""

from beamray import env, experimental
from beamray.adapters.endpoint import asgi, endpoint, realtime
from beamray.adapters.function import function
from beamray.adapters.schedule import schedule
from beamray.adapters.map import Map
from beamray.adapters.output import Output
from beamray.adapters.pod import Pod, PodInstance
from beamray.adapters.queue import Queue
from beamray.adapters.task_queue import task_queue
from beamray.adapters.volume import CloudBucket, CloudBucketConfig, Volume
from beamray.adapters.image import Image
from beamray.adapters.sandbox import (
    Sandbox, SandboxConnectionError, SandboxFileInfo, SandboxFilePosition, SandboxFileSearchMatch,
    SandboxFileSearchRange, SandboxFileSearchResult, SandboxFileSystem, SandboxFileSystemError, SandboxInstance,
    SandboxProcess, SandboxProcessError, SandboxProcessManager, SandboxProcessResponse, SandboxProcessStream,
)
from beamray.adapters.types import GpuType, PythonVersion, QueueDepthAutoscaler, TaskPolicy
from beamray.cluster import prepare_ray_environment as _prepare_ray_environment
from beamray.exceptions import ImageBuildError, RemoteExecutionError

_prepare_ray_environment()


def __getattr__(name: str):  # the client objects need Ray's modules; import them only when asked for
    if name in ("Client", "Deployment", "Task"):
        from beamray.adapters import client

        return getattr(client, name)
    raise AttributeError(f"module 'beamray' has no attribute {name!r}")

__all__ = [
    "function",
    "endpoint",
    "asgi",
    "realtime",
    "task_queue",
    "schedule",
    "experimental",
    "Output",
    "Queue",
    "Map",
    "Volume",
    "CloudBucket",
    "CloudBucketConfig",
    "Task",
    "Client",
    "Deployment",
    "Image",
    "env",
    "GpuType",
    "PythonVersion",
    "QueueDepthAutoscaler",
    "TaskPolicy",
    "RemoteExecutionError",
    "ImageBuildError",
    "Pod",
    "PodInstance",
    "Sandbox",
    "SandboxInstance",
    "SandboxProcess",
    "SandboxProcessManager",
    "SandboxProcessResponse",
    "SandboxProcessStream",
    "SandboxFileSystem",
    "SandboxFileInfo",
    "SandboxFilePosition",
    "SandboxFileSearchMatch",
    "SandboxFileSearchRange",
    "SandboxFileSearchResult",
    "SandboxProcessError",
    "SandboxConnectionError",
    "SandboxFileSystemError",
]
