"""``@function``: Beam's remote function decorator, run as Ray tasks."""

from __future__ import annotations

import asyncio
import functools
from typing import Any, Callable, Iterable, Iterator, Optional

from beamray import env as beam_env
from beamray.adapters import parsing
from beamray.adapters.common import DecoratorArgs, handler_name, signature
from beamray.adapters.handle import Handle
from beamray.exceptions import UnsupportedFeatureError
from beamray.specs import FunctionSpec, ServingSpec, TaskQueueSpec

# A deployed function has no autoscaler argument in Beam; it fans out freely, within these bounds.
FUNCTION_MAX_CONTAINERS = 32
FUNCTION_MAX_PENDING = 10_000


# The SDK's positional order; ``retry_for`` is beamray's own, last, so Beam's positions hold.
_ORDER = ("app", "cpu", "memory", "gpu", "gpu_count", "image", "timeout", "retries", "callback_url", "volumes",
          "disks", "secrets", "env", "name", "task_policy", "on_deploy", "headless", "inputs", "outputs", "pool",
          "retry_for")
_OVERRIDES = {"cpu": 0.125, "timeout": 3600}


class function:
    """Run the decorated function remotely: ``.remote()``, ``.map()``, ``.local()``.

    Arguments, defaults and positional order are Beam's (cpu 0.125, memory 128 MiB, timeout 3600 s,
    retries 3). ``gpu`` may be a priority list; the first type the cluster can serve now is used.
    """

    kind = "function"
    order = _ORDER
    overrides = _OVERRIDES

    __signature__ = signature(_ORDER, **_OVERRIDES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.runner_args = DecoratorArgs(self.kind, self.order, args, kwargs, **self.overrides)

    def __call__(self, func: Callable[..., Any]) -> "RemoteFunction":
        return RemoteFunction(func, self)

    def spec_for(self, func: Callable[..., Any]) -> FunctionSpec:
        """Build the spec; GPU names are checked here, at first use, as the SDK does."""
        args = self.runner_args
        return FunctionSpec(
            name=args.name or func.__name__, app=args.app, handler=handler_name(func), func=func,
            resources=args.resource_spec(), runtime=args.runtime_spec(), timeout=args.timeout,
            retries=args.retries, retry_for=args.retry_for, ttl=args.ttl, callback_url=args.callback_url,
            headless=bool(args["headless"]),
        )

    def deployable_spec(self, func: Callable[..., Any], name: Optional[str] = None) -> TaskQueueSpec:
        """A deployed function is a task queue of kind ``function`` (Beam: POST answers a task id)."""
        spec = self.spec_for(func)
        return TaskQueueSpec(
            kind="function", name=parsing.parse_name(name) or spec.name, app=spec.app, handler=spec.handler,
            func=func, resources=spec.resources, runtime=spec.runtime, timeout=spec.timeout, retries=spec.retries,
            retry_for=spec.retry_for, ttl=spec.ttl, callback_url=spec.callback_url,
            serving=ServingSpec(keep_warm_seconds=0, max_pending_tasks=FUNCTION_MAX_PENDING,
                                max_containers=FUNCTION_MAX_CONTAINERS),
        )


class RemoteFunction(Handle):
    """What ``@function`` returns: call it like the function, it runs on the cluster."""

    def __init__(self, func: Callable[..., Any], parent: function) -> None:
        super().__init__(func, parent)
        self._runner: Any = None
        functools.update_wrapper(self, func)

    @property
    def runner(self) -> Any:
        if self._runner is None:
            from beamray.runtime.functions import FunctionRunner

            self._runner = FunctionRunner(self.parent.spec_for(self.func))
        return self._runner

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if beam_env.called_on_import():
            return None
        if beam_env.is_remote():
            return self.local(*args, **kwargs)
        return self.remote(*args, **kwargs)

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self.runner.call(args, kwargs)

    async def async_remote(self, *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, functools.partial(self.remote, *args, **kwargs))

    def map(self, inputs: Iterable[Any], *, order_outputs: bool = True,
            return_exceptions: bool = False) -> Iterator[Any]:
        return self.runner.map(inputs, order_outputs=order_outputs, return_exceptions=return_exceptions)

    def serve(self, **kwargs: Any) -> None:
        raise UnsupportedFeatureError("Serve has not been implemented for functions.")

    def deploy_spec(self, name: Optional[str] = None) -> TaskQueueSpec:
        """Deployed, a function sits behind ``POST /function/NAME``, which answers a task id."""
        return self.parent.deployable_spec(self.func, name)

    def __reduce__(self) -> Any:
        # Pickled by value into workers (e.g. a task calling another function): rebuild from parts.
        return (RemoteFunction, (self.func, self.parent))
