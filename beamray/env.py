"""Beam's ``env`` module: where is this code running?

Remote means the ``CONTAINER_ID`` variable is set, which beamray does inside every task and replica.
"""

from __future__ import annotations

import os
from typing import Any, Callable, TypeVar

EnvValue = TypeVar("EnvValue")
_TRUE = {"true", "1", "yes", "on"}


def is_local() -> bool:
    return os.getenv("CONTAINER_ID", "") == ""


def is_remote() -> bool:
    return not is_local()


def called_on_import() -> bool:
    """True while a worker imports the user's module (module-level calls must not recurse)."""
    return os.getenv("BETA9_IMPORTING_USER_CODE") == "true"


def local_entrypoint(func: Callable[[], Any]) -> None:
    """Call ``func`` now when running locally (Beam's quirk: the decorator returns None)."""
    if is_local():
        func()


def try_env(env: str, default: EnvValue) -> EnvValue:
    """``BEAM_<ENV>`` cast to the default's type; a bool default is False when unset (the SDK's quirk)."""
    value = os.getenv(f"BEAM_{env.upper()}", "")
    if isinstance(default, bool):
        return value.lower() in _TRUE  # type: ignore[return-value]
    if not value:
        return default
    try:
        cast = type(default)(value)  # type: ignore[call-arg]
    except (TypeError, ValueError):
        return default
    return cast if cast else default


def is_notebook_env() -> bool:
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"
