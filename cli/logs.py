"""``beamray logs``: a deployment's, task's or container's output, from Ray's log API; ``-f`` follows it."""

from __future__ import annotations

import json

import click

from beamray.cli.common import beamray_errors


@click.command("logs")
@click.option("--deployment-id", help="Read a deployment's logs (its id, name or name:vN).")
@click.option("--task-id", help="Read a task's logs (after it ended too).")
@click.option("--container-id", help="Read a container's logs.")
@click.option("--tail", "--lines", "-n", "tail", type=click.IntRange(0, 1000), default=100, show_default=True,
              help="Recent lines of each log (stdout, stderr); 0 follows new lines only.")
@click.option("--since", help="Leave out what ended before: 30m, 2h, or an ISO timestamp.")
@click.option("--follow", "-f", is_flag=True, help="Read recent lines, then keep following until Ctrl-C.")
@click.option("--show-container-id", is_flag=True, help="Start each line with where it was printed.")
@click.option("--json", "as_json", is_flag=True, help="Output one JSON record per line.")
@beamray_errors
def logs(deployment_id: str | None, task_id: str | None, container_id: str | None, tail: int, since: str | None,
         follow: bool, show_container_id: bool, as_json: bool) -> None:
    """What the handler's code printed, as the dashboard shows it per actor and per task."""
    from beamray import logs as engine

    moment = engine.parse_since(since)
    resolve = engine.resolver(deployment_id=deployment_id, task_id=task_id, container_id=container_id)

    def show(line: engine.LogLine) -> None:
        if as_json:
            click.echo(json.dumps(line.to_json()))
        else:
            click.echo(f"[{line.source}] {line.message}" if show_container_id else line.message)

    if not follow:
        for line in engine.read(resolve(), tail, moment):
            show(line)
        return
    try:
        for line in engine.follow(resolve, tail, moment):
            show(line)
    except KeyboardInterrupt:  # Ctrl-C is how a follow ends
        pass


COMMANDS = [logs]
