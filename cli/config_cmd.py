"""``beamray config show | set | unset``: which cluster and gateway this machine uses."""

from __future__ import annotations

from dataclasses import dataclass

import click

from beamray import cluster, config, secrets
from beamray.cli.common import beamray_errors, json_option, print_json, say
from beamray.exceptions import BeamrayError


@dataclass
class ConfigView:
    address: str | None
    dashboard_url: str | None
    gateway_url: str
    token: str | None


@click.group("config")
def config_group() -> None:
    """Show and change beamray's settings (stored in $BEAMRAY_HOME/config.json)."""


@config_group.command()
@json_option
@beamray_errors
def show(as_json: bool) -> None:
    """Print the cluster address, dashboard and gateway URLs and the gateway token."""
    info = cluster.info(with_resources=False)
    try:
        token: str | None | None = secrets.gateway_token()
    except BeamrayError as exc:  # a remote cluster keeps the token; it may be unreachable right now
        token = None
        click.echo(f"warning: {exc}", err=True)
    view = ConfigView(address=info.address, dashboard_url=info.dashboard_url, gateway_url=info.gateway_url,
                      token=token)
    if as_json:
        print_json(view)
        return
    for key, value in vars(view).items():
        click.echo(f"{key}: {value if value is not None else '-'}")


@config_group.command("set")
@click.argument("key", type=click.Choice(config.CONFIG_KEYS))
@click.argument("value")
@beamray_errors
def set_value(key: str, value: str) -> None:
    """Set KEY (address: a Ray address; http_port: the gateway port)."""
    if key == "http_port" and not value.isdigit():
        raise click.BadParameter(f"{value!r} is not a port number", param_hint="VALUE")
    config.set_config(key, int(value) if key == "http_port" else value)
    say(f"Set {key} = {value}")


@config_group.command()
@click.argument("key", type=click.Choice(config.CONFIG_KEYS))
@beamray_errors
def unset(key: str) -> None:
    """Remove KEY, going back to the default (address: the embedded cluster)."""
    config.set_config(key, None)
    say(f"Unset {key}")


COMMANDS = [config_group]
