"""``beamray secret``: Beam's ``beam secret`` commands on beamray's secrets store."""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Callable

import click

from beamray import remote, secrets
from beamray.cli.common import beamray_errors, humanize_age, json_option, print_json, render_table, say

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


def _value_arguments(command: Callable[..., None]) -> Callable[..., None]:
    """VALUE, or ``--value-from-job``: how a remote cluster gets it, never in the job's visible command line."""
    command = click.argument("value", required=False)(command)
    return click.option("--value-from-job", is_flag=True, hidden=True)(command)


def _value(value: str | None, value_from_job: bool) -> str:
    if value_from_job:
        return remote.shipped_value()
    if value is None:
        raise click.UsageError("Missing argument 'VALUE'.")
    return value


@secret.command("create")
@click.argument("key")
@_value_arguments
@beamray_errors
def create(key: str, value: str | None, value_from_job: bool) -> None:
    """Create a secret KEY with VALUE."""
    record = secrets.create(key, _value(value, value_from_job))
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
    say(f"Secret '{record.name}': {remote.for_caller(record.value)}")


@secret.command("modify")
@click.argument("key")
@_value_arguments
@beamray_errors
def modify(key: str, value: str | None, value_from_job: bool) -> None:
    """Change the value of secret KEY (alias: update)."""
    record = secrets.modify(key, _value(value, value_from_job))
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


COMMANDS = [secret]
