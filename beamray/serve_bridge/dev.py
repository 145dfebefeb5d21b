"""An ephemeral serve session (``beamray serve FILE:HANDLER`` and ``handler.serve()``), Beam's dev loop.

The handler is deployed as ``<name>-serve`` (its own versions, so the real deployment's ``latest`` never
changes) and reached at the stable alias ``/{kind}/<name>-serve``. Until Ctrl-C or the inactivity timeout:

* replica logs are streamed to the terminal. Replicas are Serve actors of another job, so Ray's
  ``log_to_driver`` never forwards them: the session lists the app's replica actors with the state API
  and follows each one's stdout/stderr: by tailing the worker's log file when the replica runs on this
  node (the embedded cluster; no dependency on the dashboard agent, whose fixed port collides when
  several clusters share a host), else through the dashboard's log API (``/api/v0/logs/stream``, what
  ``ray.util.state.get_log`` calls). Replicas that start later (a reload, a scale-up) are picked up.
* a change to a ``.py`` file under the code root redeploys: ``beamray deploy FILE:HANDLER --name
  <name>-serve`` runs in a fresh interpreter, so decorator settings, helper modules and module state are
  re-read exactly as a real deploy would, and a broken edit cannot damage the session (the old version
  keeps serving). The new version becomes ``latest``, then the previous one is deleted.
* inactivity is measured from Serve's own per-replica request counter
  (``ray_serve_deployment_request_counter_total``, scraped from each node's Prometheus endpoint every
  few seconds); when no node's metrics are reachable, replica log output counts as activity instead.

The session ends by deleting every version of ``<name>-serve``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any, Callable

from beamray.adapters.parsing import parse_serve_timeout
from beamray.exceptions import BeamrayError
from beamray.serve_bridge.logs import LogFollower, own_job_logs_only
from beamray.specs import WEB_KINDS

SUFFIX = "-serve"
RELOAD_ENV = "BEAMRAY_SERVE_RELOAD"  # set in the reload subprocess: a module-level ``.serve()`` is a no-op
_POLL_S = 1.5  # replica discovery
_METRICS_S = 5.0  # request counter scrape
_HANDOVER_S = 1.5  # > the gateway's 1 s route cache, so alias requests never hit a deleted version
_RELOAD_TIMEOUT_S = 600
_METRIC = "ray_serve_deployment_request_counter_total{"


def serve_name(name: str) -> str:
    return f"{name[:63 - len(SUFFIX)]}{SUFFIX}"


def is_web_handle(obj: Any) -> bool:
    parent = getattr(obj, "parent", None)
    return (hasattr(obj, "func") and hasattr(parent, "spec_for")
            and getattr(parent, "kind", None) in WEB_KINDS)


def serve(handle: Any, timeout: int = 0, url_type: str = "", *, target: str | None = None,
          code_root: str | os.PathLike[str] | None = None, echo: Callable[[str], None] | None = None) -> None:
    """Serve ``handle`` until Ctrl-C or ``timeout`` (see the module docstring); returns when it ended.

    ``target`` (``FILE.py:HANDLER``) is what a reload re-imports; by default it is found from the handle's
    module. ``url_type`` is accepted for Beam compatibility; beamray's URLs are always path-style.
    """
    from beamray import env

    if env.is_remote() or env.called_on_import() or os.environ.get(RELOAD_ENV):
        return  # a module-level ``.serve()`` while a replica or a reload imports the module
    if not is_web_handle(handle):
        raise BeamrayError(f"{handle!r} is not a web endpoint (@endpoint, @asgi or @realtime); only those can serve")
    if target is None or code_root is None:
        found_target, found_root = _locate(handle)
        target, code_root = target or found_target, code_root or found_root
    ServeSession(handle, parse_serve_timeout(timeout), target, code_root, echo=echo).run()


def _locate(handle: Any) -> tuple[str | None, str]:
    """``FILE.py:ATTRIBUTE`` naming ``handle`` in its module (None: cannot reload) and the code root."""
    module = sys.modules.get(getattr(handle.func, "__module__", ""), None)
    file = getattr(module, "__file__", None)
    attribute = next((key for key, value in vars(module).items() if value is handle), None) if module else None
    if not file or not file.endswith(".py"):
        return None, os.getcwd()
    from beamray.code import module_root_and_name

    root, _ = module_root_and_name(file)
    return (f"{os.path.abspath(file)}:{attribute}" if attribute else None), root


class ServeSession:
    def __init__(self, handle: Any, timeout_s: float | None, target: str | None,
                 code_root: str | os.PathLike[str], echo: Callable[[str], None] | None = None) -> None:
        self.spec = handle.parent.spec_for(handle.func, None)
        self.name = serve_name(self.spec.name)
        self.spec = handle.parent.spec_for(handle.func, self.name)
        self.timeout_s = timeout_s
        self.target = target
        self.root = str(Path(code_root).resolve())
        self.cwd = os.getcwd()
        self.record: Any = None
        self._apps: set[str] = set()
        self._echo_lock = threading.Lock()
        self._echo = echo or (lambda line: print(line, flush=True))
        self._followers: dict[str, LogFollower] = {}
        self._last_activity = time.monotonic()
        self._last_log = 0.0
        self._counts: dict[str, float] = {}
        self._metrics_ok: bool | None = None
        self._metric_targets: list[str] = []
        self._metric_targets_at = 0.0
        self._stop = threading.Event()
        self._dashboard: str | None = None
        self._restore_logs: Callable[[], None] = lambda: None

    # -- output ------------------------------------------------------------------------------------
    def echo(self, line: str) -> None:
        with self._echo_lock:
            self._echo(line)

    def say(self, message: str) -> None:
        self.echo(f"=> {message}")

    def log_line(self, line: str) -> None:
        self._last_log = time.monotonic()
        self.echo(line)

    # -- lifecycle ---------------------------------------------------------------------------------
    def run(self) -> None:
        previous = self._install_sigterm()
        reason = ""
        try:
            self.start()
            reason = self.loop()
        except KeyboardInterrupt:
            reason = ""
        finally:
            self.close(reason)
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)

    def start(self) -> None:
        from beamray import cluster
        from beamray import deploy

        self.say(f"Serving {self.spec.kind} {self.spec.name}")
        cluster.connect()
        self._restore_logs = own_job_logs_only()
        record = deploy.deploy(self.spec, code_root=self.root)
        self._adopt(record)
        self._dashboard = cluster.dashboard_url()
        self.say(f"URL: {self.url}")
        self.say("Invocation details")
        self.echo("")
        self.echo(self.invocation())
        self.echo("")
        if self.target is None:
            self.say("Cannot find the handler's FILE:NAME; file changes will not reload")
        else:
            self.say(f"Watching {self.root} for changes (Ctrl-C to stop)")
        if self.timeout_s is not None:
            self.say(f"Stops after {self.timeout_s:g}s without requests")
        self.poll_replicas()

    @property
    def url(self) -> str:
        from beamray import cluster

        if self.record.kind == "realtime":  # the gateway cannot forward websockets: the version's own route
            return self.record.url.replace("http://", "ws://").replace("https://", "wss://")
        return f"{cluster.gateway_url()}/{self.record.kind}/{self.name}"

    def invocation(self) -> str:
        from beamray import secrets

        if self.record.kind == "realtime":
            return f"websocket: {self.url}"
        auth = f" \\\n  -H 'Authorization: Bearer {secrets.gateway_token()}'" if self.record.authorized else ""
        return (f"curl -X POST '{self.url}' \\\n  -H 'Connection: keep-alive' \\\n"
                f"  -H 'Content-Type: application/json'{auth} \\\n  -d '{{}}'")

    def _adopt(self, record: Any) -> None:
        self.record = record
        self._apps.add(record.app_name)
        self._last_activity = time.monotonic()

    def loop(self) -> str:
        """Watch files, follow replicas, check inactivity; returns why the session ends (no Ctrl-C)."""
        import watchfiles

        last_poll = last_metrics = time.monotonic()
        watch_filter = _python_filter(self.root)
        for changes in watchfiles.watch(self.root, watch_filter=watch_filter, debounce=400, rust_timeout=1000,
                                        yield_on_timeout=True, stop_event=self._stop):
            if changes and self.target is not None:
                self.reload(changes)
            now = time.monotonic()
            if now - last_poll >= _POLL_S:
                self.poll_replicas()
                last_poll = now
            if self.timeout_s is None:
                continue
            if now - last_metrics >= _METRICS_S:
                self.check_requests()
                last_metrics = now
            if self._metrics_ok is False:
                self._last_activity = max(self._last_activity, self._last_log)
            if time.monotonic() - self._last_activity >= self.timeout_s:
                return f"No requests for {self.timeout_s:g}s"
        return ""

    def reload(self, changes: set[tuple[Any, str]]) -> None:
        from beamray.registry import Registry
        from beamray import deploy

        changed = sorted({os.path.relpath(path, self.root) for _, path in changes})
        self.say(f"Change detected in {', '.join(changed[:3])}{' …' if len(changed) > 3 else ''}; redeploying")
        command = [sys.executable, "-m", "beamray.cli", "deploy", str(self.target), "--name", self.name, "--json"]
        environ = {**os.environ, RELOAD_ENV: "1"}
        try:
            done = subprocess.run(command, cwd=self.cwd, env=environ, capture_output=True, text=True,
                                  timeout=_RELOAD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.say(f"Reload timed out after {_RELOAD_TIMEOUT_S}s; still serving v{self.record.version}")
            return
        result = _json_object(done.stdout) if done.returncode == 0 else None
        found = Registry().find(result["deployment_id"]) if result else []
        if not found:
            details = (done.stderr or done.stdout).strip().splitlines()[-20:]
            self.say(f"Reload failed; still serving v{self.record.version}")
            for line in details:
                self.echo(f"   {line}")
            return
        previous = self.record
        self._adopt(found[0])
        time.sleep(_HANDOVER_S)
        with contextlib.suppress(BeamrayError):
            deploy.delete(previous.deployment_id)
        self.say(f"Reloaded (v{self.record.version})")
        if self.record.kind == "realtime":
            self.say(f"URL: {self.url}")

    def close(self, reason: str = "") -> None:
        """Delete every version of ``<name>-serve`` (and any app a cut-off deploy left behind)."""
        restore = None
        if threading.current_thread() is threading.main_thread():
            restore = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip cleanup
        try:
            if reason:
                self.say(reason)
            self._stop.set()
            for follower in self._followers.values():
                follower.stop()
            self._delete_all()
            for follower in self._followers.values():
                follower.join(2.0)
            self._restore_logs()
            self.say("Serve session ended")
        finally:
            if restore is not None:
                signal.signal(signal.SIGINT, restore)

    def _delete_all(self) -> None:
        import ray
        from ray import serve

        from beamray import deploy

        if not ray.is_initialized():  # never connected: nothing deployed (and serve.status() would ray.init())
            return
        with contextlib.suppress(BeamrayError):
            deploy.delete(self.name)
        pattern = re.compile(rf"{re.escape(self.name)}-v\d+")
        with contextlib.suppress(Exception):
            for app_name in serve.status().applications:
                if pattern.fullmatch(app_name):
                    serve.delete(app_name)

    def _install_sigterm(self) -> Any:
        if threading.current_thread() is not threading.main_thread():
            return None

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        return signal.signal(signal.SIGTERM, interrupt)

    # -- logs --------------------------------------------------------------------------------------
    def poll_replicas(self) -> None:
        """Follow every replica of this session's apps that is not dead yet; stop following dead ones."""
        from ray.util.state import list_actors

        if self._dashboard is None:
            return
        try:
            actors = list_actors(address=self._dashboard, limit=10_000, raise_on_missing_output=False,
                                 filters=[("ray_namespace", "=", "serve"), ("state", "!=", "DEAD")])
        except Exception:
            return  # the dashboard is briefly busy; the next poll retries
        alive = set()
        for actor in actors:
            parts = (actor.class_name or "").split(":")
            if len(parts) != 3 or parts[0] != "ServeReplica" or parts[1] not in self._apps or not actor.pid:
                continue
            key = f"{actor.actor_id}:{actor.pid}"
            alive.add(key)
            if key not in self._followers:
                follower = LogFollower(actor, self._dashboard, self.log_line, self.say)
                self._followers[key] = follower
                follower.start()
        for key, follower in list(self._followers.items()):
            if key not in alive:
                follower.stop()
                if not follower.is_alive():
                    del self._followers[key]

    # -- inactivity --------------------------------------------------------------------------------
    def check_requests(self) -> None:
        """Any replica's request counter went up since the last scrape → activity now."""
        counts = self._scrape()
        if counts is None:
            if self._metrics_ok is None:
                self.say("Request metrics unavailable; replica log output counts as activity")
            self._metrics_ok = False
            return
        self._metrics_ok = True
        if any(value > self._counts.get(key, 0.0) for key, value in counts.items()):
            self._last_activity = time.monotonic()
        self._counts = counts

    def _scrape(self) -> dict[str, float] | None:
        """Serve's request counters of this session's apps, per series, from every reachable node."""
        if not self._metric_targets or time.monotonic() - self._metric_targets_at > 60:
            self._metric_targets = _metrics_targets()
            self._metric_targets_at = time.monotonic()
        counts: dict[str, float] = {}
        reached = False
        for target in self._metric_targets:
            try:
                with urllib.request.urlopen(target, timeout=3) as response:
                    for raw in response:
                        if not raw.startswith(_METRIC.encode()):
                            continue
                        line = raw.decode("utf-8", "replace").rstrip()
                        labels, _, value = line.rpartition(" ")
                        app = re.search(r'application="([^"]*)"', labels)
                        if app and app.group(1) in self._apps:
                            counts[f"{target}|{labels}"] = float(value)
                reached = True
            except (OSError, ValueError):
                continue
        return counts if reached else None


def _metrics_targets() -> list[str]:
    import ray

    try:
        nodes = ray.nodes() if ray.is_initialized() else []
    except Exception:
        return []
    return [f"http://{node['NodeManagerAddress']}:{node['MetricsExportPort']}/metrics"
            for node in nodes if node.get("Alive") and node.get("MetricsExportPort")]


def _python_filter(root: str) -> Callable[[Any, str], bool]:
    """Changes to ``.py`` files that would be shipped (the packager's ignore rules, ``.beamignore``)."""
    import watchfiles

    from beamray import code

    default = watchfiles.PythonFilter()
    patterns = code._ignore_patterns(Path(root))

    def accept(change: Any, path: str) -> bool:
        if not default(change, path):
            return False
        relative = os.path.relpath(path, root).replace(os.sep, "/")
        return not relative.startswith("..") and not code._ignored(relative, patterns)

    return accept


def _json_object(text: str) -> dict[str, Any] | None:
    """The JSON object ``beamray deploy --json`` printed (Ray may print lines around it)."""
    start, end = text.find("{"), text.rfind("}")
    if start < 0 or end < start:
        return None
    try:
        value = json.loads(text[start:end + 1])
    except json.JSONDecodeError:
        return None
    return value if isinstance(value, dict) and "deployment_id" in value else None
