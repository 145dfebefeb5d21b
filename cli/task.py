"""``beamray task list | show | cancel``: Beam's task API from the terminal."""

from __future__ import annotations

import click

from beamray.cli.common import beamray_errors, json_option, print_json, render_table, say


@click.group("task")
def task_group() -> None:
    """List, inspect and cancel task-queue tasks."""


@task_group.command("list")
@click.option("--status", "statuses", help="Comma-separated statuses, e.g. running,pending.")
@click.option("--name", help="Only tasks of this task queue.")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True)
@json_option
@beamray_errors
def list_command(statuses: str | None, name: str | None, limit: int, as_json: bool) -> None:
    """The newest tasks first."""
    from beamray.tasks import client, records

    wanted = [records.normalize_status(s) for s in statuses.split(",")] if statuses else None
    tasks = client.list_tasks(wanted, name, limit)
    if as_json:
        print_json(tasks)
        return
    rows = [(t["id"], t["status"], t["stub"]["name"].split("/", 1)[-1], t["created_at"] or "-",
             t["started_at"] or "-", t["ended_at"] or "-") for t in tasks]
    click.echo(render_table(("ID", "Status", "Queue", "Created", "Started", "Ended"), rows))
    click.echo(f"\n  {len(tasks)} items")


@task_group.command()
@click.argument("task_id")
@beamray_errors
def show(task_id: str) -> None:
    """One task as the task API returns it (JSON)."""
    from beamray.tasks import client

    print_json(client.get(task_id))


@task_group.command(name="cancel")
@click.argument("task_ids", nargs=-1, required=True)
@beamray_errors
def cancel(task_ids: tuple[str, ...]) -> None:
    """Cancel pending or running tasks (``-`` reads ids from stdin)."""
    from beamray.tasks import client

    ids = click.get_text_stream("stdin").read().split() if task_ids == ("-",) else list(task_ids)
    cancelled = set(client.cancel(ids))
    for task_id in ids:
        say(f"Cancelled task {task_id}" if task_id in cancelled else f"Task {task_id} was not running or pending")


task_group.add_command(cancel, name="stop")  # Beam's CLI calls it `task stop`

COMMANDS = [task_group]
