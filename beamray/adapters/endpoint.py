"""``@endpoint``, ``@asgi`` and ``@realtime``: Beam's web deployments, served by Ray Serve.

The three decorators take the same settings in different positional orders (the SDK's); each order is
declared once below and bound onto one implementation (``adapters.common.DecoratorArgs``).
"""

from __future__ import annotations

from typing import Any, Callable

from beamray import env as beam_env
from beamray.adapters import parsing
from beamray.adapters.common import DecoratorArgs, handler_name, pickle_by_reference, signature
from beamray.adapters.handle import Handle
from beamray.specs import EndpointSpec

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


class _WebDecorator:
    kind = ""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.runner_args = DecoratorArgs(self.kind, _ORDER[self.kind], args, kwargs)
        self.serving = self.runner_args.serving()

    def __call__(self, func: Callable[..., Any]) -> "WebHandle":
        return WebHandle(func, self)

    def spec_for(self, func: Callable[..., Any], name: str | None = None) -> EndpointSpec:
        args = self.runner_args
        return EndpointSpec(
            kind=self.kind, name=parsing.parse_name(name) or args.name or func.__name__, app=args.app,
            handler=handler_name(func), func=func, resources=args.resource_spec(), runtime=args.runtime_spec(),
            serving=self.serving, timeout=args.timeout, callback_url=args.callback_url,
        )


class endpoint(_WebDecorator):
    """A synchronous web endpoint: POST/GET JSON in, the handler's JSON out."""

    kind = "endpoint"
    __signature__ = signature(_ORDER["endpoint"])


class asgi(_WebDecorator):
    """An ASGI app (FastAPI, Starlette, …) returned by ``handler(context)``, served for all paths."""

    kind = "asgi"
    __signature__ = signature(_ORDER["asgi"])


class realtime(_WebDecorator):
    """A WebSocket: each message is passed to ``handler(event)`` and its return value sent back."""

    kind = "realtime"
    __signature__ = signature(_ORDER["realtime"])


class WebHandle(Handle):
    """What the web decorators return: deployable, and callable inside a replica."""

    def __init__(self, func: Callable[..., Any], parent: _WebDecorator) -> None:
        pickle_by_reference(func)
        super().__init__(func, parent)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if beam_env.is_remote():
            return self.local(*args, **kwargs)
        raise NotImplementedError("Direct calls to Endpoints are not supported.")

    def deploy_spec(self, name: str | None = None) -> EndpointSpec:
        return self.parent.spec_for(self.func, name)

    def serve(self, timeout: int = 0, url_type: str = "") -> None:
        """An ephemeral ``<name>-serve`` deployment: streams logs, reloads on file change, ends on Ctrl-C."""
        from beamray.serve_bridge import dev

        dev.serve(self, timeout=timeout, url_type=url_type)
