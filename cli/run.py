"""``beamray run FILE.py [ARGS…]``: run an unchanged Beam program on the cluster."""

from __future__ import annotations

import os
import runpy
import sys

import click

from beamray.cli.common import BEAMRAY_ERRORS, explained


@click.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def run(file: str, args: tuple[str, ...]) -> None:
    """Run FILE as ``__main__`` with ``import beam`` / ``beta9`` resolving to beamray."""
    from beamray import drop_in

    drop_in.install()
    path = os.path.abspath(file)
    sys.argv = [path, *args]
    sys.path.insert(0, os.path.dirname(path))
    try:
        runpy.run_path(path, run_name="__main__")
    except SystemExit as exit_:
        if exit_.code not in (None, 0):
            raise
    except BEAMRAY_ERRORS as exc:  # beamray's own errors read as one message; the user's keep their traceback
        raise explained(exc) from exc
    sys.stdout.flush()


COMMANDS = [run]
