"""Helpers shared by every command group: JSON output, Beam's ``=>`` lines, error mapping."""

from __future__ import annotations

import functools
import json
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import click

from beamray.exceptions import BeamrayError


def say(message: str) -> None:
    """Beam's CLI prints its status lines as ``=> message``."""
    click.echo(f"=> {message}")


def print_json(value: Any) -> None:
    if is_dataclass(value) and not isinstance(value, type):
        value = asdict(value)
    click.echo(json.dumps(value, indent=2, default=str))


def json_option(func: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")(func)


def beamray_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Report library errors as click errors (exit 1) instead of tracebacks."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (BeamrayError, ValueError, KeyError) as exc:
            message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
            raise click.ClickException(str(message)) from exc

    return wrapper
