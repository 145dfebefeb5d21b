"""What every Beam decorator returns: a handle on the user's function that knows how to deploy it.

The CLI's ``beamray deploy FILE.py:NAME`` and the SDK's ``handle.deploy()`` go through ``deploy_spec``:
one path from decorator to spec to ``beamray.deploy`` for every kind.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any, Callable

from beamray.specs import EndpointSpec, TaskQueueSpec


class Handle(ABC):
    def __init__(self, func: Callable[..., Any], parent: Any) -> None:
        self.func = func
        self.parent = parent  # the decorator, which holds the parsed Beam arguments

    def local(self, *args: Any, **kwargs: Any) -> Any:
        """Run the function here, as Beam's ``.local()``."""
        return self.func(*args, **kwargs)

    @abstractmethod
    def deploy_spec(self, name: str | None = None) -> EndpointSpec | TaskQueueSpec:
        """The spec a deploy of this handle runs (``name`` overrides the decorator's)."""

    def deploy(self, name: str | None = None, context: Any = None, invocation_details_func: Any = None,
               rollout: str = "auto", **invocation_details_options: Any) -> tuple[dict[str, Any], bool]:
        """Deploy a new version; returns Beam's ``(details, ok)`` pair (each deploy is a new version)."""
        from beamray import deploy

        record = deploy.deploy(self.deploy_spec(name))
        return record.beam_details(), True
