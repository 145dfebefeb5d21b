"""``beamray``: Beam's CLI habits on a Ray cluster."""

from __future__ import annotations

import sys

import click

from beamray import remote
from beamray.cluster import forward_worker_logs, prepare_ray_environment
from beamray.config import configured_address

# Commands that act on this machine (serve watches local files); the rest follow BEAMRAY_ADDRESS when it
# is a job-submission address.
LOCAL_COMMANDS = ("cluster", "config", "k8s", "serve")
PROGRAM_COMMANDS = ("run",)  # the user's program runs here: its remote output is shown


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="beamray")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run Beam apps on a Ray cluster (the embedded local one unless BEAMRAY_ADDRESS is set).

    With BEAMRAY_ADDRESS=http(s)://HEAD:8265, commands run on that cluster as Ray jobs.
    """
    prepare_ray_environment()
    forward_worker_logs(ctx.invoked_subcommand in PROGRAM_COMMANDS)
    address = configured_address()
    if remote.is_job_address(address) and ctx.invoked_subcommand not in LOCAL_COMMANDS and "--help" not in sys.argv:
        ctx.exit(remote.run_cli(address, sys.argv[1:]))


def _register() -> None:
    from beamray.cli import (cluster, config_cmd, container, deploy, k8s, logs, machine, run, secret, serve, task,
                             volume)

    for module in (cluster, config_cmd, container, deploy, k8s, logs, machine, run, secret, serve, task, volume):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
