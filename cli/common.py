"""Helpers shared by every command group: JSON output, Beam's ``=>`` lines, error mapping."""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict, is_dataclass
from typing import Any, Callable

import click

from beamray.exceptions import BeamrayError, ImageBuildError, InfeasibleResourcesError

BEAMRAY_ERRORS = (BeamrayError, ImageBuildError)  # beamray's own: one clear message, no traceback


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
        except (*BEAMRAY_ERRORS, ValueError, KeyError) as exc:
            raise explained(exc) from exc

    return wrapper


def explained(exc: BaseException) -> click.ClickException:
    """The error as the user should read it: its message, then the next step where there is one."""
    message = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    step = next_step(exc)
    return click.ClickException(f"{message}\n{step}" if step else message)


def next_step(exc: BaseException) -> str:
    """What to do about ``exc``: for hardware the embedded cluster lacks, how to emulate it."""
    from beamray import locations

    if not isinstance(exc, InfeasibleResourcesError) or not locations.is_embedded():
        return ""
    from beamray.gpus import beam_gpu_type

    wanted = exc.requested
    flags = [f"--gpu {gpu_type}" + (f":{int(wanted['GPU'])}" if wanted.get("GPU", 1) > 1 else "")
             for gpu_type in filter(None, map(beam_gpu_type, wanted))]
    if "GPU" in wanted and not flags:
        flags.append(f"--num-gpus {int(wanted['GPU'])}")
    most_cpus = max((node.get("CPU", 0) for node in exc.available), default=0)
    if wanted.get("CPU", 0) > most_cpus:
        flags.append(f"--num-cpus {wanted['CPU']:g}")
    most_memory = max((node.get("memory", 0) for node in exc.available), default=0)
    if wanted.get("memory", 0) > most_memory:
        flags.append(f"--memory {int(-(-wanted['memory'] // 2**30))}Gi")
    if not flags:
        return ""
    return ("This is the embedded local cluster. To emulate that hardware for code that does not use the "
            f"device, restart it with:\n  beamray cluster down && beamray cluster up {' '.join(flags)}")


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


def humanize_duration(seconds: float) -> str:
    """``42s``, ``5m 3s``, ``3h 2m``, ``2d 4h``: how long something has been up, in its two largest units."""
    left = max(int(seconds), 0)
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if left >= size or (unit == "s" and not parts):
            parts.append(f"{left // size}{unit}")
            left %= size
    return " ".join(parts[:2])


def render_table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    """Beam's borderless table, drawn by ``rich`` as Beam's CLI draws it: two-space indent, a rule under the
    headers, bold headers on a terminal. Never wrapped (a URL stays one word), trailing spaces dropped."""
    import io
    import sys

    from rich import box
    from rich.cells import cell_len
    from rich.console import Console
    from rich.table import Table

    table = Table(*headers, box=box.SIMPLE_HEAD, header_style="bold" if sys.stdout.isatty() else "", show_edge=True)
    for row in rows:
        table.add_row(*row)
    widths = [max([cell_len(header)] + [cell_len(row[i]) for row in rows]) for i, header in enumerate(headers)]
    buffer = io.StringIO()
    console = Console(file=buffer, width=sum(widths) + 3 * len(widths) + 2, force_terminal=sys.stdout.isatty(),
                      no_color=not sys.stdout.isatty(), highlight=False, emoji=False, markup=False)
    console.print(table, crop=False, overflow="ignore", no_wrap=True)
    lines = [line.rstrip() for line in buffer.getvalue().splitlines()]
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    return "\n".join(lines)
