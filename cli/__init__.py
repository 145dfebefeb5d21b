"""The ``beamray`` command (installed as ``beamray.cli``); one module per command group."""
