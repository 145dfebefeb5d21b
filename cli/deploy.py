"""``beamray deploy FILE.py:HANDLER`` and ``beamray deployment list | stop | delete``."""

from __future__ import annotations

from dataclasses import dataclass

import click

from beamray import remote
from beamray.cli.common import beamray_errors, humanize_age, json_option, print_json, render_table, say
from beamray.cli.loading import load_handler
from beamray.cli.run import _pod_flags, apply_pod_overrides, pod_overrides


@dataclass
class DeployResult:
    """What ``beamray deploy --json`` prints (the contract)."""

    deployment_id: str
    stub_id: str
    name: str
    kind: str
    version: int
    url: str


def _invocation(result: DeployResult, authorized: bool, token: str) -> str:
    if result.kind == "realtime":
        return f"websocket: {result.url.replace('http://', 'ws://').replace('https://', 'wss://')}"
    auth = f" \\\n  -H 'Authorization: Bearer {remote.for_caller(token)}'" if authorized else ""
    if result.kind == "pod":  # any HTTP (or WebSocket) request reaches the pod's process
        return f"curl '{result.url.replace('<PORT>', '{PORT}')}/'{auth}"
    return (f"curl -X POST '{result.url}' \\\n  -H 'Connection: keep-alive' \\\n"
            f"  -H 'Content-Type: application/json'{auth} \\\n  -d '{{}}'")


def _print_schedule(when: str) -> None:
    from beamray.adapters.schedule import upcoming

    say("Schedule details")
    click.echo(f"Schedule: {when}")
    click.echo("Upcoming:")
    for number, moment in enumerate(upcoming(when), start=1):
        local = moment.astimezone()
        click.echo(f"  {number}. {moment:%Y-%m-%d %H:%M:%S} UTC ({local:%Y-%m-%d %H:%M:%S} {local.tzname()})")


@click.command()
@click.argument("handler")
@click.option("-n", "--name", help="Deployment name (default: the decorator's name, else the function's).")
@_pod_flags
@json_option
@beamray_errors
def deploy(handler: str, name: str | None, as_json: bool, **flags: object) -> None:
    """Deploy HANDLER (FILE.py:FUNCTION) as a new version on the cluster."""
    from beamray import deploy, secrets
    from beamray.adapters.handle import Handle
    from beamray.adapters.pod import Pod

    target, root = load_handler(handler)
    if not isinstance(target, Handle):
        raise click.BadParameter(f"{handler} is not a deployable Beam object "
                                 "(@endpoint, @asgi, @realtime, @task_queue, @function, @schedule, Pod)",
                                 param_hint="HANDLER")
    changes = pod_overrides(flags)
    if changes and not isinstance(target, Pod):
        raise click.UsageError("override flags (--cpu, --ports, --entrypoint, …) apply to Pods only in beamray")
    if changes:
        target = apply_pod_overrides(target, changes)
    spec = target.deploy_spec(name)
    if not as_json:
        say(f"Deploying {spec.kind} {spec.name}")
    record = deploy.deploy(spec, code_root=root)
    result = DeployResult(record.deployment_id, record.stub_id, record.name, record.kind, record.version, record.url)
    if as_json:
        print_json(result)
        return
    say("Deployed 🎉")
    if spec.kind == "schedule":
        _print_schedule(spec.schedule)
        return
    say(f"Version: v{record.version} (also at {record.url.rsplit('/v', 1)[0]} while latest)"
        if record.authorized else f"Public URL: {record.url}")
    say("Invocation details")
    click.echo("")
    click.echo(_invocation(result, record.authorized, secrets.gateway_token()))


_ACTIVE = {"running": "Yes", "stopped": "No", "failed": "Failed"}


@click.group("deployment")
def deployment_group() -> None:
    """List, stop and delete deployments."""


@deployment_group.command("list")
@json_option
@beamray_errors
def list_command(as_json: bool) -> None:
    """Every deployed version, newest last."""
    from beamray import deploy

    records = deploy.list_deployments()
    if as_json:
        print_json([vars(record) for record in records])
        return
    rows = [(record.deployment_id[:8], record.name, record.kind, f"v{record.version}",
             _ACTIVE.get(record.status, "No"), humanize_age(record.created_at), record.url)
            for record in records]
    click.echo(render_table(("ID", "Name", "Kind", "Version", "Active", "Created", "URL"), rows))
    click.echo(f"\n  {len(records)} items")
    for record in records:
        if record.status == "failed":
            click.echo(f"  {record.name} v{record.version} failed: {record.error}")


@deployment_group.command()
@click.argument("identifier")
@beamray_errors
def stop(identifier: str) -> None:
    """Stop IDENTIFIER (a deployment id, NAME for all versions, or NAME:vN)."""
    from beamray import deploy

    for record in deploy.stop(identifier):
        say(f"Stopped {record.name} v{record.version} ({record.deployment_id})")


@deployment_group.command()
@click.argument("identifier")
@beamray_errors
def delete(identifier: str) -> None:
    """Stop and forget IDENTIFIER (a deployment id, NAME for all versions, or NAME:vN)."""
    from beamray import deploy

    for record in deploy.delete(identifier):
        say(f"Deleted {record.name} v{record.version} ({record.deployment_id})")


COMMANDS = [deploy, deployment_group]
