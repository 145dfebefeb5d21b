"""``@schedule``: a function that the cluster runs on a cron schedule (UTC), as tasks of the task service.

``when`` is a 5-field cron expression or one of ``@yearly @annually @monthly @weekly @daily @midnight
@hourly``; croniter's optional 6th field (seconds) is accepted too. Missed ticks are not replayed: after
downtime the schedule resumes at its next tick, as cron does.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Optional

from croniter import croniter

from beamray.adapters import parsing
from beamray.adapters.common import signature
from beamray.adapters.function import RemoteFunction, function
from beamray.specs import TaskQueueSpec


def upcoming(when: str, count: int = 3, after: datetime.datetime | None = None) -> list[datetime.datetime]:
    """The next ``count`` firing times, in UTC."""
    start = after or datetime.datetime.now(datetime.timezone.utc)
    times = croniter(when, start)
    return [times.get_next(datetime.datetime) for _ in range(count)]


class schedule(function):
    """Run the decorated function on a schedule once deployed (``beamray deploy app.py:task``)."""

    kind = "schedule"
    order = ("when", "app", "cpu", "memory", "gpu", "gpu_count", "image", "timeout", "retries", "callback_url",
             "volumes", "disks", "secrets", "env", "name", "on_deploy")
    overrides = {"timeout": 3600}
    __signature__ = signature(order, **overrides)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.when = parsing.parse_schedule(self.runner_args["when"])

    def __call__(self, func: Callable[..., Any]) -> "ScheduleWrapper":
        return ScheduleWrapper(func, self)

    def deployable_spec(self, func: Callable[..., Any], name: Optional[str] = None) -> TaskQueueSpec:
        from dataclasses import replace

        return replace(super().deployable_spec(func, name), kind="schedule", schedule=self.when)


class ScheduleWrapper(RemoteFunction):
    """A function handle whose ``deploy()`` registers its schedule on the cluster."""

    def deploy(self, *args: Any, **kwargs: Any) -> tuple[dict[str, Any], bool]:
        """Register the schedule (replacing an older version); Beam's ``({deployment_id, scheduled_job_id}, ok)``."""
        details, ok = super().deploy(*args, **kwargs)
        return {"deployment_id": details["deployment_id"], "scheduled_job_id": details["stub_id"]}, ok

    def __reduce__(self) -> Any:
        return (ScheduleWrapper, (self.func, self.parent))
