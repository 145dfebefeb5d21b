"""The ``context`` a handler receives when it has a parameter of that name (Beam's FunctionContext)."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable, Optional


@dataclass
class FunctionContext:
    container_id: Optional[str] = None
    stub_id: Optional[str] = None
    stub_type: Optional[str] = None
    callback_url: Optional[str] = None
    task_id: Optional[str] = None
    timeout: Optional[int] = None
    on_start_value: Optional[Any] = None
    bind_port: int = 0
    python_version: str = ""


def wants_context(func: Callable[..., Any]) -> bool:
    """Beam passes ``context`` only to handlers with a parameter literally named so."""
    try:
        return "context" in inspect.signature(func).parameters
    except (TypeError, ValueError):
        return False
