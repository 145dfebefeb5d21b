"""beamray: Beam's decorators and data types, run on Ray.

``import beamray as beam`` (or ``beamray run app.py``, where ``import beam`` resolves here) gives an
unchanged Beam program the names below. Importing starts no Ray; the cluster is reached on first use.
"""

from beamray import env
from beamray.adapters.endpoint import asgi, endpoint, realtime
from beamray.adapters.function import function
from beamray.adapters.image import Image
from beamray.adapters.types import GpuType, PythonVersion, QueueDepthAutoscaler, TaskPolicy
from beamray.cluster import prepare_ray_environment as _prepare_ray_environment
from beamray.exceptions import ImageBuildError, RemoteExecutionError

_prepare_ray_environment()

__all__ = [
    "function",
    "endpoint",
    "asgi",
    "realtime",
    "Image",
    "env",
    "GpuType",
    "PythonVersion",
    "QueueDepthAutoscaler",
    "TaskPolicy",
    "RemoteExecutionError",
    "ImageBuildError",
]
