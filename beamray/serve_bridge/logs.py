"""Following a Serve replica's output for ``beamray serve``: its log files line by line, from the start.

On the replica's own node the files are read directly; elsewhere through the dashboard's log API. Ray's
own forwarding of worker output to the driver is narrowed to the driver's own job meanwhile
(``own_job_logs_only``), so no line is printed twice.
"""

from __future__ import annotations

import contextlib
import glob
import os
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable

from beamray import ray_private

_RAY_MARKERS = (":job_id:", ":actor_name:", ":task_name:")
_SERVE_ACTORS = ("ServeReplica:", "ServeController", "ProxyActor")


class LogFollower:
    """Prints one replica's stdout and stderr, line by line, from the start of its log files."""

    def __init__(self, actor: Any, dashboard: str, emit: Callable[[str], None],
                 note: Callable[[str], None] | None = None) -> None:
        self.actor = actor
        self.dashboard = dashboard
        self.emit = emit
        self.note = note or emit
        self._stop = threading.Event()
        self._responses: list[Any] = []
        self._threads = [threading.Thread(target=self._follow, args=(suffix,), daemon=True,
                                          name=f"beamray-serve-log-{actor.actor_id[:8]}-{suffix}")
                         for suffix in ("out", "err")]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for response in list(self._responses):
            with contextlib.suppress(Exception):
                response.close()

    def join(self, timeout: float) -> None:
        for thread in self._threads:
            thread.join(timeout)

    def is_alive(self) -> bool:
        return any(thread.is_alive() for thread in self._threads)

    def _follow(self, suffix: str) -> None:
        try:
            path = _local_log_file(self.actor, suffix)
            if path is not None:
                self._tail(path)
            else:
                self._stream(suffix)
        except Exception as exc:  # a stream cut when its replica goes away is expected
            if not self._stop.is_set():
                self.note(f"Cannot follow the {suffix} log of {self.actor.name or self.actor.actor_id}: "
                          f"{exc}".rstrip())

    def _lines(self, chunks: Any) -> None:
        pending = ""
        for chunk in chunks:
            pending += chunk
            *lines, pending = pending.split("\n")
            for line in lines:
                if not line.startswith(_RAY_MARKERS):
                    self.emit(line.rstrip("\r"))
        if pending and not pending.startswith(_RAY_MARKERS):
            self.emit(pending)

    def _tail(self, path: str) -> None:
        def chunks() -> Any:
            with open(path, encoding="utf-8", errors="replace") as handle:
                while True:
                    data = handle.read()
                    if data:
                        yield data
                    elif self._stop.is_set():
                        return
                    else:
                        time.sleep(0.2)

        self._lines(chunks())

    def _stream(self, suffix: str) -> None:
        query = urllib.parse.urlencode({"actor_id": self.actor.actor_id, "suffix": suffix, "lines": -1,
                                        "media_type": "stream"})
        request = urllib.request.Request(f"{self.dashboard}/api/v0/logs/stream?{query}",
                                         headers=ray_private.dashboard_auth_headers())
        try:
            opened = urllib.request.urlopen(request, timeout=None)
        except urllib.error.HTTPError as exc:  # the dashboard says why in the body
            raise RuntimeError(exc.read().decode("utf-8", "replace")[:300] or str(exc)) from exc
        with opened as response:
            self._responses.append(response)
            if self._stop.is_set():
                return

            def chunks() -> Any:
                while not self._stop.is_set():
                    data = response.read1(65536)
                    if not data:
                        return
                    yield data.decode("utf-8", "replace")

            self._lines(chunks())


def own_job_logs_only() -> Callable[[], None]:
    """Print only this driver's own job's forwarded worker logs, minus Serve's actors; returns the undo.

    Connecting to Serve turns Ray's per-job log filter off (``_filter_logs_by_job``), after which a
    driver prints every job's worker output cluster-wide, prefixed; and when this process started Serve,
    every Serve actor belongs to its job. The session prints its replicas' lines itself, so Ray's print
    handler is wrapped to drop other jobs and Serve's actors, keeping a script's own tasks' output
    (``handler.serve()`` from a script that also runs functions). Private Ray API: on a mismatch,
    nothing changes.
    """
    try:
        import ray

        dispatcher = ray_private.worker_output_dispatcher()
        job = ray.get_runtime_context().get_job_id()
        lock, handlers = dispatcher._lock, dispatcher.handlers
    except Exception:
        return lambda: None
    wrapped: dict[int, Callable[[Any], None]] = {}

    def only_own_job(handler: Callable[[Any], None]) -> Callable[[Any], None]:
        def emit(data: Any) -> None:
            if not isinstance(data, dict):
                handler(data)
            elif (not data.get("job") or data["job"] == job) and not str(data.get("actor_name") or "").startswith(
                    _SERVE_ACTORS):
                handler(data)

        wrapped[id(emit)] = handler
        return emit

    with lock:
        dispatcher.handlers = [(name, only_own_job(handler) if name == "ray_print_logs" else handler)
                               for name, handler in handlers]

    def undo() -> None:
        with lock:
            dispatcher.handlers = [(name, wrapped.get(id(handler), handler)) for name, handler in dispatcher.handlers]

    return undo


def _local_log_file(actor: Any, suffix: str) -> str | None:
    """The replica's worker log file when it runs on this node and this process can read it."""
    import ray

    try:
        if not ray.is_initialized() or actor.node_id != ray.get_runtime_context().get_node_id():
            return None
        logs_dir = ray_private.logs_dir()
    except Exception:
        return None
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        found = glob.glob(os.path.join(logs_dir, f"worker-*-{actor.pid}.{suffix}"))
        if found:
            return max(found, key=os.path.getmtime)
        time.sleep(0.2)
    return None
