"""Beam's ``experimental`` module: ``Signal``, an event one app sets and others react to.

A signal is a key in Ray's internal KV holding its expiry time. A ``Signal`` created with a handler
while a replica or worker imports the user's module starts a daemon thread that checks the key every
second and calls the handler while the signal is set (Beam's behaviour: again each second until
cleared; with ``clear_after_interval`` > 0 the monitor clears it that many seconds after handling).
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

from beamray import env

_NAMESPACE = "beamray_signals"
POLL_S = 1.0


def _kv() -> Any:
    from beamray import cluster, ray_private

    cluster.connect()
    return ray_private.InternalKV(_NAMESPACE)


class Signal:
    """``Signal(name=…, handler=None, clear_after_interval=-1)``: ``set(ttl=600)`` and ``clear()``."""

    def __init__(self, *, name: str, handler: Optional[Callable[[], Any]] = None,
                 clear_after_interval: Optional[int] = -1) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError("Signal name must be a non-empty string")
        self.name = name
        self.handler = handler
        self.clear_after_interval = clear_after_interval if clear_after_interval is not None else -1
        if handler is not None and env.called_on_import():
            threading.Thread(target=self._monitor, name=f"beamray-signal-{name}", daemon=True).start()

    def set(self, ttl: int = 600) -> bool:
        """Raise the signal for ``ttl`` seconds."""
        expires = time.time() + ttl
        _kv().put(self.name, str(expires).encode())
        return True

    def clear(self) -> bool:
        _kv().delete(self.name)
        return True

    def is_set(self) -> bool:
        raw = _kv().get(self.name)
        return raw is not None and float(raw) > time.time()

    def _monitor(self) -> None:
        while True:
            try:
                if self.is_set():
                    self.handler()  # type: ignore[misc]
                    if self.clear_after_interval > 0:
                        time.sleep(self.clear_after_interval)
                        self.clear()
            except Exception as exc:  # a failing handler must not end the monitor
                print(f"Signal {self.name!r} handler failed: {exc!r}")
            time.sleep(POLL_S)
