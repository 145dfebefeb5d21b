"""What the adapters produce and the Ray side consumes: one frozen dataclass per deployable kind.

Specs import no Ray and hold parsed values only; change one with ``dataclasses.replace``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any, Callable


class Kind(str, Enum):
    """What a deployment is; a ``str``, so ``"endpoint" == Kind.ENDPOINT`` and records keep plain strings."""

    ENDPOINT = "endpoint"
    ASGI = "asgi"
    REALTIME = "realtime"
    TASKQUEUE = "taskqueue"
    FUNCTION = "function"  # a deployed @function: POST /function/NAME enqueues a task
    SCHEDULE = "schedule"
    POD = "pod"  # an entrypoint process with exposed ports (``Pod``), reached at /pod/…


WEB_KINDS = frozenset({Kind.ENDPOINT, Kind.ASGI, Kind.REALTIME})  # Serve applications
QUEUED_KINDS = frozenset({Kind.TASKQUEUE, Kind.FUNCTION, Kind.SCHEDULE})  # queues of the task service


@dataclass(frozen=True)
class ResourceSpec:
    """A container's size: ``cpu`` in cores, ``memory_mib``, GPU types in priority order."""

    cpu: float = 1.0
    memory_mib: float = 128
    gpu: tuple[str, ...] = ()
    gpu_count: int = 0


@dataclass(frozen=True)
class ImageSpec:
    """The parts of a Beam ``Image`` that can change where and how code runs."""

    python_version: str = "python3"
    python_packages: tuple[str, ...] = ()
    build_steps: tuple[tuple[str, str], ...] = ()  # (kind, detail) in the order the user added them
    base_image: str | None = None
    dockerfile: str | None = None
    env_vars: tuple[tuple[str, str], ...] = ()
    build_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class RuntimeSpec:
    """What a task's process needs around the handler: env, secrets (names only), image, volumes."""

    env: tuple[tuple[str, str], ...] = ()
    secrets: tuple[str, ...] = ()
    image: ImageSpec = field(default_factory=ImageSpec)
    volumes: tuple[Any, ...] = ()


@dataclass(frozen=True)
class FunctionSpec:
    """A ``@function`` (also the body of a ``@schedule``): run as Ray tasks."""

    name: str  # deployment name, or the handler's function name
    app: str
    handler: str  # "module:function", shown in the Ray dashboard
    func: Callable[..., Any] = field(compare=False, repr=False)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    timeout: float | None = 3600.0
    retries: int = 3
    retry_for: tuple[type[BaseException], ...] = ()
    ttl: int = 0
    callback_url: str = ""
    headless: bool = False


@dataclass(frozen=True)
class ServingSpec:
    """How a deployment serves traffic: concurrency, scaling, warmth, auth, start-up hook."""

    workers: int = 1
    concurrent_requests: int = 1
    keep_warm_seconds: float = 180
    max_pending_tasks: int = 100
    authorized: bool = True
    min_containers: int = 0
    max_containers: int = 1
    tasks_per_container: int = 1
    on_start: Callable[[], Any] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class EndpointSpec:
    """An ``@endpoint``, ``@asgi`` or ``@realtime`` deployment (``kind`` says which)."""

    kind: str  # "endpoint" | "asgi" | "realtime"
    name: str
    app: str
    handler: str  # "module:function"
    func: Callable[..., Any] = field(compare=False, repr=False)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    timeout: float | None = 180.0
    callback_url: str = ""


@dataclass(frozen=True)
class TaskQueueSpec:
    """A ``@task_queue``: tasks enqueued over HTTP or ``.put()``, run as Ray tasks with Beam's statuses."""

    name: str
    app: str
    handler: str
    func: Callable[..., Any] = field(compare=False, repr=False)
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    serving: ServingSpec = field(default_factory=ServingSpec)
    timeout: float | None = 3600.0
    retries: int = 3
    retry_for: tuple[type[BaseException], ...] = ()
    ttl: int = 0
    callback_url: str = ""
    kind: str = "taskqueue"  # also "function" (a deployed @function) and "schedule"
    schedule: str = ""  # cron expression, for kind "schedule"


@dataclass(frozen=True)
class PodSpec:
    """A ``Pod``: an entrypoint process in one container, its ``ports`` reached through the gateway.

    ``serving`` carries ``authorized`` (default False for pods) and ``keep_warm_seconds`` (-1: never idle
    out; 0: stop as soon as no connection is open). A pod holds no user callables.
    """

    name: str
    app: str
    entrypoint: tuple[str, ...]
    ports: tuple[int, ...] = ()
    resources: ResourceSpec = field(default_factory=ResourceSpec)
    runtime: RuntimeSpec = field(default_factory=RuntimeSpec)
    serving: ServingSpec = field(default_factory=lambda: ServingSpec(authorized=False, keep_warm_seconds=600))
    kind: str = "pod"

    @property
    def handler(self) -> str:
        return f"pod:{self.name}"


def without_user_code(spec: Any) -> Any:
    """``spec`` with every callable of the user's removed: what launching its containers needs.

    It unpickles in any process (a restore in ``beamray cluster up`` run from another folder, a driver
    without the app's packages), where the full spec would import the user's module.
    """
    if isinstance(spec, PodSpec):
        return spec
    changes: dict[str, Any] = {"func": None}
    if hasattr(spec, "serving"):
        changes["serving"] = replace(spec.serving, on_start=None)
    if hasattr(spec, "retry_for"):
        changes["retry_for"] = ()
    return replace(spec, **changes)
