"""Exceptions raised by beamray.

Beam's own names are kept so that existing ``except`` clauses keep working; ours hang under
``BeamrayError``::

    Exception
    ├── RemoteExecutionError          (Beam, a RuntimeError) a remote call failed
    ├── ImageBuildError               (Beam, a RuntimeError) an Image cannot be honoured here
    └── BeamrayError                  anything beamray itself reports
        ├── ClusterError              no cluster, cannot start / reach one
        ├── DeployError               a deployment did not become healthy (its traceback in the message)
        ├── InfeasibleResourcesError  no node can ever satisfy a resource request
        ├── SecretNotFoundError       a secret named by a decorator or CLI is missing
        ├── TaskQueueFullError        a task queue already holds max_pending_tasks
        └── UnsupportedFeatureError   a Beam feature beamray does not implement
"""

from __future__ import annotations

from typing import Any


class RemoteExecutionError(RuntimeError):
    """A remote function failed (Beam's name; raised by ``.remote()`` and a bare call)."""

    def __init__(self, task_id: str, status: str, exit_code: int, output: str = "") -> None:
        self.task_id = task_id
        self.status = status
        self.exit_code = exit_code
        self.output = output
        super().__init__(f"Task {task_id} {status} (exit code {exit_code})\n{output}".rstrip())


class ImageBuildError(RuntimeError):
    """An ``Image`` step cannot be honoured (Beam's name)."""


class BeamrayError(Exception):
    """Base class of the errors beamray reports about itself."""


class ClusterError(BeamrayError):
    """The Ray cluster cannot be started, reached or used."""


class DeployError(BeamrayError):
    """A deployment did not become healthy (e.g. its ``on_start`` raised); the message has the traceback."""


class InfeasibleResourcesError(BeamrayError):
    """No node of the cluster can ever satisfy a request; raised instead of Ray's silent hang."""

    def __init__(self, what: str, requested: dict[str, float], available: list[dict[str, Any]]) -> None:
        self.requested = requested
        self.available = available
        nodes = "; ".join(_format_resources(node) for node in available) or "no alive nodes"
        super().__init__(
            f"{what} asks for {_format_resources(requested)}, which no node of the cluster can provide "
            f"(nodes: {nodes}). Lower the request, or add a node that has it."
        )


class TaskQueueFullError(BeamrayError):
    """A task queue holds ``max_pending_tasks`` already (HTTP 429); the task was not enqueued."""


class TaskTooLargeError(BeamrayError, ValueError):
    """A task's arguments or result exceed the size a task record may hold (HTTP 413); nothing was stored."""


class StoreUnavailableError(BeamrayError):
    """beamray's durable store (SQLite, Redis) did not answer; nothing was accepted. HTTP 503."""


class SecretNotFoundError(BeamrayError, KeyError):
    """A secret is missing from the secrets store."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class UnsupportedFeatureError(BeamrayError, NotImplementedError):
    """A Beam feature that beamray does not implement (yet); the message names it."""


def _format_resources(resources: dict[str, Any]) -> str:
    shown = []
    for key, value in sorted(resources.items()):
        if key.startswith("node:") or key == "object_store_memory":
            continue
        if key == "memory":
            shown.append(f"memory={value / 2**20:.0f}MiB")
        elif isinstance(value, float) and value.is_integer():
            shown.append(f"{key}={int(value)}")
        else:
            shown.append(f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}")
    return "{" + ", ".join(shown) + "}"
