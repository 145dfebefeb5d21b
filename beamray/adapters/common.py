"""What every Beam decorator shares: resources, runtime settings, the handler's name."""

from __future__ import annotations

import inspect
import os
import sys
from typing import Any, Callable

from beamray.adapters import parsing
from beamray.exceptions import UnsupportedFeatureError
from beamray.specs import ImageSpec, ResourceSpec, RuntimeSpec, ServingSpec


def handler_name(func: Callable[..., Any]) -> str:
    """Beam records a handler as ``"<module path relative to cwd>:<function>"``."""
    module = getattr(func, "__module__", None) or "__main__"
    if module == "__main__":
        main_file = getattr(sys.modules.get("__main__"), "__file__", None)
        module = os.path.splitext(os.path.basename(main_file))[0] if main_file else "__main__"
    return f"{module}:{getattr(func, '__name__', 'handler')}"


def pickle_by_reference(func: Callable[..., Any]) -> None:
    """Let replicas import the handler's module instead of receiving a copy of the function.

    The decorator replaces the module attribute with its handle, so pickle cannot find the function by
    name and would copy it with a private copy of its globals: module-level code (an
    ``experimental.Signal`` with a handler, a model loaded at import) would never run in the replica.
    Naming the function ``<handle>.func`` makes ``module.<name>.func`` resolve to it.
    """
    qualname = getattr(func, "__qualname__", "")
    if qualname and "<locals>" not in qualname and not qualname.endswith(".func"):
        func.__qualname__ = f"{qualname}.func"


# Every decorator's settings with the SDK's defaults. Each decorator declares its own positional order of
# a subset of these and its own default overrides; ``DecoratorArgs`` binds and parses a call against them.
DEFAULTS: dict[str, Any] = {
    "when": inspect.Parameter.empty, "app": "", "cpu": 1.0, "memory": 128, "gpu": "", "gpu_count": 0,
    "image": None, "timeout": 180, "retries": 3, "workers": 1, "concurrent_requests": 1, "keep_warm_seconds": 180,
    "max_pending_tasks": 100, "on_start": None, "on_deploy": None, "volumes": None, "disks": None,
    "secrets": None, "env": None, "name": None, "authorized": True, "autoscaler": None, "callback_url": None,
    "task_policy": None, "checkpoint_enabled": False, "retry_for": None, "inputs": None, "outputs": None,
    "pool": None, "headless": False,
}
UNSUPPORTED = ("on_deploy", "disks", "inputs", "outputs", "pool", "checkpoint_enabled")


def signature(order: tuple[str, ...], **overrides: Any) -> inspect.Signature:
    """A decorator's public signature: ``order`` of the shared settings, with per-decorator defaults."""
    defaults = {**DEFAULTS, **overrides}
    return inspect.Signature([inspect.Parameter(name, inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                                default=defaults[name]) for name in order])


class DecoratorArgs:
    """One decorator call, bound in the SDK's positional order and parsed like the SDK does at decoration.

    The GPU type alone waits for the first run (``resource_spec``), as in the SDK.
    """

    def __init__(self, kind: str, order: tuple[str, ...], args: tuple[Any, ...], kwargs: dict[str, Any],
                 **overrides: Any) -> None:
        bound = signature(order, **overrides).bind(*args, **kwargs)
        bound.apply_defaults()
        self.options = {**DEFAULTS, **overrides, **bound.arguments}
        for feature in UNSUPPORTED:
            if self.options.get(feature):
                raise UnsupportedFeatureError(f"@{kind}({feature}=…) is not supported by beamray yet")
        options = self.options
        self.cpu_millicores = parsing.parse_cpu(options["cpu"])
        self.memory = parsing.parse_memory(options["memory"])
        self.gpu = options["gpu"]
        self.gpu_count = parsing.resolve_gpu_count(self.gpu, options["gpu_count"])
        self.image = options["image"]
        self.secrets = parsing.parse_secrets(options["secrets"])
        self.env = parsing.parse_env(options["env"])
        self.volumes = tuple(options["volumes"] or ())
        self.name = parsing.parse_name(options["name"])
        self.app = options["app"] or self.name or os.path.basename(os.getcwd())
        self.callback_url = parsing.parse_callback_url(options["callback_url"])
        self.retries, timeout, self.ttl = parsing.apply_task_policy(
            options["task_policy"], parsing.parse_retries(options["retries"]), options["timeout"])
        self.timeout = parsing.parse_timeout(timeout)
        self.retry_for = parsing.parse_retry_for(options["retry_for"])

    def __getitem__(self, key: str) -> Any:
        return self.options[key]

    def resource_spec(self) -> ResourceSpec:
        return ResourceSpec(cpu=self.cpu_millicores / 1000, memory_mib=self.memory,
                            gpu=parsing.parse_gpu(self.gpu), gpu_count=self.gpu_count)

    def runtime_spec(self) -> RuntimeSpec:
        image = self.image.to_spec() if self.image is not None else ImageSpec()
        return RuntimeSpec(env=self.env, secrets=self.secrets, image=image, volumes=self.volumes)

    def serving(self) -> ServingSpec:
        options = self.options
        autoscaler = parsing.parse_autoscaler(options["autoscaler"])
        return ServingSpec(
            workers=_positive_int("workers", options["workers"]),
            concurrent_requests=_positive_int("concurrent_requests", options["concurrent_requests"]),
            keep_warm_seconds=_non_negative("keep_warm_seconds", options["keep_warm_seconds"]),
            max_pending_tasks=_positive_int("max_pending_tasks", options["max_pending_tasks"]),
            authorized=bool(options["authorized"]),
            min_containers=autoscaler.min_containers, max_containers=autoscaler.max_containers,
            tasks_per_container=autoscaler.tasks_per_container,
            on_start=_callable_or_none("on_start", options["on_start"]),
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
