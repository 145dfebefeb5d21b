"""``beamray``: Beam's CLI habits on a Ray cluster."""

from __future__ import annotations

import click

from beamray.cluster import prepare_ray_environment


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="beamray")
def cli() -> None:
    """Run Beam apps on a Ray cluster (the embedded local one unless BEAMRAY_ADDRESS is set)."""
    prepare_ray_environment()


def _register() -> None:
    from beamray.cli import cluster, config_cmd, deploy, run, secret, task, volume

    for module in (cluster, config_cmd, deploy, run, secret, task, volume):
        for command in module.COMMANDS:
            cli.add_command(command)


_register()
