"""Beam's sandbox errors (``beam.SandboxProcessError`` …), raised by the actor and re-raised to the caller.

Each keeps Beam's constructor and pickles by its arguments, so it crosses Ray unchanged.
"""

from __future__ import annotations


class SandboxConnectionError(RuntimeError):
    """The sandbox cannot be reached: never created, terminated, or expired."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SandboxProcessError(RuntimeError):
    """A process call failed: unknown pid, a binary that does not exist, a killed sandbox."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


class SandboxFileSystemError(RuntimeError):
    """A file call failed; says which operation on which path of which sandbox."""

    def __init__(self, message: str, operation: str, path: str, container_id: str) -> None:
        self.message, self.operation, self.path, self.container_id = message, operation, path, container_id
        super().__init__(f"{operation} {path!r} in {container_id}: {message}")

    def __reduce__(self):
        return type(self), (self.message, self.operation, self.path, self.container_id)
