"""``.map``'s progress line on a terminal, drawn by ``rich`` as Beam's CLI draws its progress.

Shown only when stderr is a terminal and the map is long (unknown length, or at least ``MIN_ITEMS``
inputs): ``=> Map <module:function> ━━━━━━━━━━ 120/400 done 0:00:03``. Pipes and files get nothing, so
a program's output stays its own. rich redraws from its own thread a few times a second; ``advance`` only
counts.
"""

from __future__ import annotations

import sys
from typing import Any

MIN_ITEMS = 100


class MapProgress:
    def __init__(self, label: str, total: int | None) -> None:
        self.label, self.total, self.done = label, total, 0
        self._enabled = sys.stderr.isatty() and (total is None or total >= MIN_ITEMS)
        self._bar: Any = None
        self._task: Any = None

    def _start(self) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns = [TextColumn(f"=> Map <{self.label}>", markup=False)]
        if self.total is not None:
            columns += [BarColumn(), MofNCompleteColumn()]
        else:
            columns.append(TextColumn("{task.completed}"))
        columns += [TextColumn("done"), TimeElapsedColumn()]
        self._bar = Progress(*columns, console=Console(file=sys.stderr), refresh_per_second=5)
        self._task = self._bar.add_task("map", total=self.total)
        self._bar.start()

    def advance(self) -> None:
        self.done += 1
        if not self._enabled:
            return
        if self._bar is None:
            self._start()
        self._bar.advance(self._task)

    def close(self) -> None:
        """Draw the final count and leave it on screen."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None

    def __del__(self) -> None:  # a map abandoned half way (the caller stopped iterating)
        self.close()
