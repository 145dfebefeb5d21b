"""``python -m beamray.cli`` is the ``beamray`` command."""

from beamray.cli.main import cli

cli(prog_name="beamray")
