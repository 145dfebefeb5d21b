"""``@endpoint``, ``@asgi`` and ``@realtime``: Beam's web deployments, served by Ray Serve.

The three decorators take the same settings in different positional orders (the SDK's); each order is
declared once below and bound onto one implementation, so every kwarg is parsed in one place.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable

from beamray import env as beam_env
from beamray.adapters import parsing
from beamray.adapters.common import RunnerArgs, handler_name
from beamray.adapters.types import QueueDepthAutoscaler, TaskPolicy
from beamray.exceptions import UnsupportedFeatureError
from beamray.specs import EndpointSpec, ServingSpec

_DEFAULTS: dict[str, Any] = {
    "app": "", "cpu": 1.0, "memory": 128, "gpu": "", "gpu_count": 0, "image": None, "timeout": 180,
    "workers": 1, "concurrent_requests": 1, "keep_warm_seconds": 180, "max_pending_tasks": 100,
    "on_start": None, "on_deploy": None, "volumes": None, "disks": None, "secrets": None, "env": None,
    "name": None, "authorized": True, "autoscaler": None, "callback_url": None, "task_policy": None,
    "checkpoint_enabled": False, "inputs": None, "outputs": None, "pool": None,
}
_ORDER = {
    "endpoint": ("cpu", "memory", "app", "gpu", "gpu_count", "image", "timeout", "workers", "keep_warm_seconds",
                 "max_pending_tasks", "on_start", "on_deploy", "volumes", "disks", "secrets", "env", "name",
                 "authorized", "autoscaler", "callback_url", "task_policy", "checkpoint_enabled", "inputs",
                 "outputs", "pool"),
    "asgi": ("app", "cpu", "memory", "gpu", "gpu_count", "image", "timeout", "workers", "concurrent_requests",
             "keep_warm_seconds", "max_pending_tasks", "on_start", "on_deploy", "volumes", "disks", "secrets",
             "env", "name", "authorized", "autoscaler", "callback_url", "checkpoint_enabled", "pool"),
    "realtime": ("cpu", "memory", "gpu", "gpu_count", "image", "timeout", "workers", "concurrent_requests",
                 "keep_warm_seconds", "max_pending_tasks", "on_start", "on_deploy", "volumes", "disks", "secrets",
                 "env", "name", "authorized", "autoscaler", "callback_url", "checkpoint_enabled", "pool"),
}
_UNSUPPORTED = ("on_deploy", "disks", "inputs", "outputs", "pool", "checkpoint_enabled")


def _signature(kind: str) -> inspect.Signature:
    return inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD, default=_DEFAULTS[name])
                              for name in _ORDER[kind]])


class _WebDecorator:
    kind = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        bound = _signature(self.kind).bind(*args, **kwargs)
        bound.apply_defaults()
        options = {**_DEFAULTS, **bound.arguments}
        for feature in _UNSUPPORTED:
            if options.get(feature):
                raise UnsupportedFeatureError(f"@{self.kind}({feature}=…) is not supported by beamray yet")
        self.runner_args = RunnerArgs(
            app=options["app"], cpu=options["cpu"], memory=options["memory"], gpu=options["gpu"],
            gpu_count=options["gpu_count"], image=options["image"], secrets=options["secrets"], env=options["env"],
            volumes=options["volumes"], name=options["name"], callback_url=options["callback_url"],
        )
        _, timeout, _ = parsing.apply_task_policy(options["task_policy"], 0, options["timeout"])
        self.timeout = parsing.parse_timeout(timeout)
        autoscaler: QueueDepthAutoscaler = parsing.parse_autoscaler(options["autoscaler"])
        self.serving = ServingSpec(
            workers=_positive_int("workers", options["workers"]),
            concurrent_requests=_positive_int("concurrent_requests", options["concurrent_requests"]),
            keep_warm_seconds=_non_negative("keep_warm_seconds", options["keep_warm_seconds"]),
            max_pending_tasks=_positive_int("max_pending_tasks", options["max_pending_tasks"]),
            authorized=bool(options["authorized"]),
            min_containers=autoscaler.min_containers, max_containers=autoscaler.max_containers,
            tasks_per_container=autoscaler.tasks_per_container,
            on_start=_callable_or_none("on_start", options["on_start"]),
        )

    def __call__(self, func: Callable[..., Any]) -> "WebHandle":
        return WebHandle(func, self)

    def spec_for(self, func: Callable[..., Any], name: str | None = None) -> EndpointSpec:
        args = self.runner_args
        return EndpointSpec(
            kind=self.kind, name=parsing.parse_name(name) or args.name or func.__name__, app=args.app,
            handler=handler_name(func), func=func, resources=args.resource_spec(), runtime=args.runtime_spec(),
            serving=self.serving, timeout=self.timeout, callback_url=args.callback_url,
        )


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _non_negative(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise ValueError(f"{name} must be a non-negative number of seconds, got {value!r}")
    return float(value)


def _callable_or_none(name: str, value: Any) -> Callable[[], Any] | None:
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be a function, got {value!r}")
    return value


class endpoint(_WebDecorator):
    """A synchronous web endpoint: POST/GET JSON in, the handler's JSON out."""

    kind = "endpoint"
    __signature__ = _signature("endpoint")


class asgi(_WebDecorator):
    """An ASGI app (FastAPI, Starlette, …) returned by ``handler(context)``, served for all paths."""

    kind = "asgi"
    __signature__ = _signature("asgi")


class realtime(_WebDecorator):
    """A WebSocket: each message is passed to ``handler(event)`` and its return value sent back."""

    kind = "realtime"
    __signature__ = _signature("realtime")


class WebHandle:
    """What the web decorators return: deployable, and callable inside a replica."""

    def __init__(self, func: Callable[..., Any], parent: _WebDecorator) -> None:
        self.func = func
        self.parent = parent

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if beam_env.is_remote():
            return self.local(*args, **kwargs)
        raise NotImplementedError("Direct calls to Endpoints are not supported.")

    def local(self, *args: Any, **kwargs: Any) -> Any:
        return self.func(*args, **kwargs)

    def deploy(self, name: str | None = None, context: Any = None, invocation_details_func: Any = None,
               rollout: str = "auto", **invocation_details_options: Any) -> tuple[dict[str, Any], bool]:
        """Deploy a new version; returns Beam's ``(details, ok)`` pair (each deploy is a new version)."""
        from beamray.serve_bridge import deployments

        record = deployments.deploy(self.parent.spec_for(self.func, name))
        return record.beam_details(), True

    def serve(self, timeout: int = 0, url_type: str = "") -> None:
        """An ephemeral deployment that streams logs until Ctrl-C (use ``beamray serve FILE:HANDLER``)."""
        raise UnsupportedFeatureError("use `beamray serve FILE.py:HANDLER` to serve with reload")
