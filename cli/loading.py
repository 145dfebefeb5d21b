"""Import ``FILE.py:HANDLER`` the way Beam's CLI does: as a module named by its path relative to cwd."""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click


def split_target(target: str) -> tuple[str, str]:
    file, sep, attribute = target.rpartition(":")
    if not sep or not file.endswith(".py") or not attribute.isidentifier():
        raise click.BadParameter(f"{target!r} is not FILE.py:HANDLER (e.g. app.py:handler)", param_hint="HANDLER")
    if not os.path.isfile(file):
        raise click.BadParameter(f"file {file!r} does not exist", param_hint="HANDLER")
    return file, attribute


def load_handler(target: str) -> tuple[Any, str]:
    """The decorated object named by ``target`` and the code root; ``beam``/``beta9`` resolve to beamray."""
    from beamray import drop_in
    from beamray.code import module_root_and_name

    file, attribute = split_target(target)
    root, module_name = module_root_and_name(file)
    drop_in.install()
    # The code root first, then the file's own folder (its sibling modules), as the container sets it up.
    for folder in (os.path.dirname(os.path.abspath(file)), root):
        if folder not in sys.path:
            sys.path.insert(0, folder)
    module = importlib.import_module(module_name)
    if not hasattr(module, attribute):
        raise click.BadParameter(f"{file} has no attribute {attribute!r}", param_hint="HANDLER")
    return getattr(module, attribute), root
