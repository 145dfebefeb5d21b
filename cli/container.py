"""``beamray container list | stop ID | exec ID -- CMD…``: the cluster's running containers, as Beam's CLI has them."""

from __future__ import annotations

import sys
import time
from dataclasses import asdict

import click

from beamray.cli.common import beamray_errors, humanize_duration, json_option, print_json, render_table, say


def _deployment(container) -> str:
    return f"{container.deployment} v{container.version}" if container.version else container.deployment or "-"


def _size(container) -> str:
    size = f"{container.cpu:g} cpu, {container.memory_mib:.0f}Mi"
    if container.gpu:
        size += f", {container.gpu:g}× {container.gpu_type or 'GPU'}"
    return size


@click.group("container")
def container_group() -> None:
    """List, stop and run commands in the cluster's running containers."""


@container_group.command("list")
@json_option
@beamray_errors
def list_command(as_json: bool) -> None:
    """Every running container: replicas, task-queue workers, pods, function calls."""
    from beamray import containers

    found = containers.list_containers()
    if as_json:
        print_json([asdict(container) for container in found])
        return
    now = time.time()
    rows = [(c.container_id, c.kind, _deployment(c), c.status,
             humanize_duration(now - c.started_at) if c.started_at else "-", c.node_address or c.node_id[:12] or "-",
             _size(c)) for c in found]
    click.echo(render_table(("ID", "Kind", "Deployment", "Status", "Uptime", "Node", "Resources"), rows))
    click.echo(f"\n  {len(found)} items")


@container_group.command()
@click.argument("container_ids", nargs=-1, required=True)
@beamray_errors
def stop(container_ids: tuple[str, ...]) -> None:
    """Stop containers by id; each deployment starts another when it needs one."""
    from beamray import containers

    for container_id in container_ids:
        container = containers.stop(container_id)
        what = f" ({container.kind} {_deployment(container)})" if container.deployment else f" ({container.kind})"
        say(f"Stopped container {container.container_id}{what}")


@container_group.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--cwd", default="", help="Working directory, relative to the container's (its code directory).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Kill the command after this many seconds (exit code 124).")
@click.argument("container_id")
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
@beamray_errors
def exec(ctx: click.Context, cwd: str, timeout: float | None, container_id: str,  # noqa: A001 (Beam's name)
         command: tuple[str, ...]) -> None:
    """Run COMMAND in CONTAINER_ID's environment (its code directory, env and volumes); exits with its code.

    Example: beamray container exec endpoint-1a2b3c4d-xyz -- ls -la
    """
    from beamray.container_exec import exec_command

    if command[:1] == ("--",):  # `ID -- CMD…`: after the id, click keeps the separator
        command = command[1:]
    if not command:
        raise click.UsageError("Missing the command to run: beamray container exec ID -- CMD [ARGS…]")
    streams = {"stdout": sys.stdout.buffer, "stderr": sys.stderr.buffer}
    code = 0
    for kind, value in exec_command(container_id, list(command), cwd, timeout):
        if kind == "exit":
            code = value
            continue
        streams[kind].write(value)
        streams[kind].flush()
    ctx.exit(code)


COMMANDS = [container_group]
