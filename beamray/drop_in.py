"""Let unchanged Beam programs import ``beam`` / ``beta9``: both names resolve to beamray.

Installed by ``beamray run`` / ``deploy`` / ``serve`` in the driver, and by ``runtime/container.py`` in
every worker before it unpickles user code, so user modules imported remotely find ``beam`` too. A real
``beam-client`` installed beside beamray is shadowed only inside those processes.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from types import ModuleType
from typing import Sequence

ALIASES = ("beam", "beta9")


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        return importlib.import_module(self.target)

    def exec_module(self, module: ModuleType) -> None:
        """The target module is already executed."""


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None):
        head, _, rest = fullname.partition(".")
        if head not in ALIASES:
            return None
        real = "beamray" + (f".{rest}" if rest else "")
        if importlib.util.find_spec(real) is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real))


def install() -> None:
    """Idempotent: put the alias finder first on ``sys.meta_path``."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())
