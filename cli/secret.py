"""``beamray secret``: Beam's ``beam secret`` commands on beamray's secrets store."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import click

from beamray import secrets
from beamray.cli.common import beamray_errors, json_option, print_json, say

_ALIASES = {"update": "modify"}


class _SecretGroup(click.Group):
    """Accepts ``update`` for ``modify`` without listing it twice in ``--help``."""

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        return super().get_command(ctx, _ALIASES.get(cmd_name, cmd_name))

    def resolve_command(self, ctx: click.Context, args: list[str]):  # type: ignore[no-untyped-def]
        name, command, rest = super().resolve_command(ctx, args)
        return (command.name if command else name), command, rest


@click.group(cls=_SecretGroup)
def secret() -> None:
    """Manage secrets, injected into apps as env vars by name (`secrets=[...]`)."""


@secret.command("create")
@click.argument("key")
@click.argument("value")
@beamray_errors
def create(key: str, value: str) -> None:
    """Create a secret KEY with VALUE."""
    record = secrets.create(key, value)
    say(f"Created secret with name: '{record.name}'")


@secret.command("list")
@json_option
@beamray_errors
def list_(as_json: bool) -> None:
    """List secrets (names and ages; never values)."""
    records = secrets.list_secrets()
    if as_json:
        print_json([{"name": r.name, "created_at": _iso(r.created_at), "updated_at": _iso(r.updated_at)}
                    for r in records])
        return
    now = time.time()
    rows = [(r.name, humanize_age(r.updated_at, now), humanize_age(r.created_at, now)) for r in records]
    click.echo(render_table(("Name", "Last Updated", "Created"), rows))
    click.echo()
    click.echo(f"  {len(rows)} {'item' if len(rows) == 1 else 'items'}")


@secret.command("show")
@click.argument("key")
@beamray_errors
def show(key: str) -> None:
    """Print the value of secret KEY."""
    record = secrets.show(key)
    say(f"Secret '{record.name}': {record.value}")


@secret.command("modify")
@click.argument("key")
@click.argument("value")
@beamray_errors
def modify(key: str, value: str) -> None:
    """Change the value of secret KEY (alias: update)."""
    record = secrets.modify(key, value)
    say(f"Modified secret '{record.name}'")


@secret.command("delete")
@click.argument("key")
@beamray_errors
def delete(key: str) -> None:
    """Delete secret KEY."""
    secrets.delete(key)
    say(f"Deleted secret '{key}'")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, timezone.utc).isoformat()


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


COMMANDS = [secret]
