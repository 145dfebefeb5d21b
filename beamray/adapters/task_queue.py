"""``@task_queue``: Beam's asynchronous task queue, run by beamray's task service on Ray."""

from __future__ import annotations

from typing import Any, Callable

from beamray import env as beam_env
from beamray.adapters import parsing
from beamray.adapters.common import DecoratorArgs, handler_name, pickle_by_reference, signature
from beamray.adapters.handle import Handle
from beamray.specs import TaskQueueSpec

_ORDER = ("app", "cpu", "memory", "gpu", "gpu_count", "image", "timeout", "retries", "workers", "keep_warm_seconds",
          "max_pending_tasks", "on_start", "on_deploy", "callback_url", "volumes", "disks", "secrets", "env", "name",
          "authorized", "autoscaler", "task_policy", "checkpoint_enabled", "retry_for", "inputs", "outputs", "pool")
_OVERRIDES = {"timeout": 3600, "keep_warm_seconds": 10}


class task_queue:
    """Enqueue work with ``.put()`` or ``POST /taskqueue/NAME``; tasks run with retries, timeouts and statuses."""

    __signature__ = signature(_ORDER, **_OVERRIDES)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.runner_args = DecoratorArgs("task_queue", _ORDER, args, kwargs, **_OVERRIDES)
        self.serving = self.runner_args.serving()

    def __call__(self, func: Callable[..., Any]) -> "TaskQueueHandle":
        return TaskQueueHandle(func, self)

    def spec_for(self, func: Callable[..., Any], name: str | None = None) -> TaskQueueSpec:
        args = self.runner_args
        return TaskQueueSpec(
            name=parsing.parse_name(name) or args.name or func.__name__, app=args.app, handler=handler_name(func),
            func=func, resources=args.resource_spec(), runtime=args.runtime_spec(), serving=self.serving,
            timeout=args.timeout, retries=args.retries, retry_for=args.retry_for, ttl=args.ttl,
            callback_url=args.callback_url,
        )


class TaskQueueHandle(Handle):
    """What ``@task_queue`` returns: ``.put()`` enqueues; calling it directly works only inside a task."""

    def __init__(self, func: Callable[..., Any], parent: task_queue) -> None:
        pickle_by_reference(func)
        super().__init__(func, parent)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if beam_env.is_remote():
            return self.local(*args, **kwargs)
        raise NotImplementedError(
            "Direct calls to TaskQueues are not yet supported. To enqueue items use .put(*args, **kwargs)")

    def deploy_spec(self, name: str | None = None) -> TaskQueueSpec:
        return self.parent.spec_for(self.func, name)

    def put(self, *args: Any, **kwargs: Any) -> Any:
        """Enqueue a task (JSON arguments, as Beam) on the latest deployed version, deploying one if none runs."""
        from beamray import cluster, deploy
        from beamray.registry import Registry
        from beamray.tasks import client

        spec = self.deploy_spec()
        client.check_arguments(args, kwargs)
        cluster.connect()
        record = Registry().latest(spec.name, kind="taskqueue") or deploy.deploy(spec)
        return client.put(record.app_name, args, kwargs)

    def serve(self, timeout: int = 0, url_type: str = "") -> None:
        from beamray.exceptions import UnsupportedFeatureError

        raise UnsupportedFeatureError("serving a task queue ephemerally is not supported; use `beamray deploy`")
