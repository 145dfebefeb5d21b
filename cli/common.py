"""Helpers shared by every command group: JSON output, Beam's ``=>`` lines, error mapping."""

from __future__ import annotations

import functools
import json
import time
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


def humanize_age(timestamp: float, now: float | None = None) -> str:
    """``20 seconds ago``, ``1 minute ago``, ``19 hours ago``… as Beam's tables show ages."""
    seconds = int((time.time() if now is None else now) - timestamp)
    if seconds < 1:
        return "just now"
    for unit, size in (("year", 365 * 86400), ("month", 30 * 86400), ("day", 86400), ("hour", 3600),
                       ("minute", 60), ("second", 1)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'' if count == 1 else 's'} ago"
    return "just now"  # unreachable


def render_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Beam's borderless table: two-space indent, a rule under the headers."""
    widths = [max([len(header)] + [len(row[i]) for row in rows]) for i, header in enumerate(headers)]

    def line(cells: tuple[str, ...]) -> str:
        return "  " + "   ".join(cell.ljust(width) for cell, width in zip(cells, widths)).rstrip()

    rule = " " + "─" * (sum(widths) + 3 * (len(widths) - 1) + 2)
    return "\n".join([line(headers), rule] + [line(row) for row in rows])
