"""``beamray serve FILE.py:HANDLER``: an ephemeral deployment that streams logs and reloads on change."""

from __future__ import annotations

import click

from beamray.cli.common import beamray_errors
from beamray.cli.loading import load_handler


@click.command()
@click.argument("handler")
@click.option("-t", "--timeout", type=int, default=0, show_default=True,
              help="Stop after this many seconds without requests (0: 10 minutes, -1: never).")
@click.option("--url-type", type=click.Choice(["", "host", "path"]), default="",
              help="Accepted for Beam compatibility; beamray URLs are always path-style.")
@beamray_errors
def serve(handler: str, timeout: int, url_type: str) -> None:
    """Serve HANDLER (FILE.py:FUNCTION) as `<name>-serve`, reloading on file changes, until Ctrl-C."""
    from beamray.serve_bridge import dev

    if timeout < -1:
        raise click.BadParameter("must be -1 (never), 0 (10 minutes) or a number of seconds",
                                 param_hint="'-t' / '--timeout'")
    target, root = load_handler(handler)
    if not dev.is_web_handle(target):
        raise click.BadParameter(f"{handler} is not a web endpoint (@endpoint, @asgi or @realtime); "
                                 "only those can be served (use `beamray run` for functions)", param_hint="HANDLER")
    dev.serve(target, timeout=timeout, url_type=url_type, target=handler, code_root=root, echo=click.echo)


COMMANDS = [serve]
