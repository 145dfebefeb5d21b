"""A pod's container: its entrypoint as a subprocess of one named Ray actor, ``PodContainer``.

The actor is a Beam container like a replica or a task worker (``runtime.container``: the shipped code
as its working directory, imports isolated; the spec's env and secrets through ``worker.task_environment``;
volumes through ``mounts``; resources and image from the deploy's Ray options). Its Ray actor name is its
Beam container id ``pod-<stub_id>-<8 hex>`` in beamray's namespace, so ``container list`` finds it and
``describe()`` says what it is.

Lifecycle: PENDING until every port accepts connections (then it registers with
``serve_bridge.port_proxy``'s registry and is RUNNING), RUNNING until the entrypoint exits (COMPLETE on 0,
FAILED otherwise, with the exit code and the output's tail), or until no connection has been seen for
``keep_warm_seconds`` (STOPPED; -1 never). An exited container stays ``EXITED_LINGER_S`` so that its
status can be read, then ends itself.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any

import ray

from beamray import cluster
from beamray.exceptions import BeamrayError
from beamray.runtime import pod_network
from beamray.runtime.container import ContainerCode
from beamray.specs import PodSpec

EXITED_LINGER_S = 60.0
SOCKETS_ROOT = "/tmp/beamray-pods"  # short: a Unix socket path has at most 107 bytes
_BRIDGE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "pod_bridge.py")
BUSY_STALE_S = 10.0  # a "busy" heartbeat older than this no longer keeps the pod up (its proxy went away)
TAIL_LINES = 40
TERMINAL = frozenset({"COMPLETE", "FAILED", "STOPPED"})


@dataclass(frozen=True)
class PodLaunch:
    """What starting one container of a pod needs: its spec, who it belongs to, the Ray options."""

    spec: PodSpec
    stub_id: str
    actor_options: dict[str, Any]
    deployment_id: str = ""  # empty for a pod from ``create()`` / ``beamray run``
    version: int = 0
    container_code: ContainerCode | None = None  # without a runtime env: the code it enters itself


def new_container_id(stub_id: str) -> str:
    return f"pod-{stub_id}-{os.urandom(4).hex()}"


def own_network() -> bool:
    """Whether pods get a network namespace of their own (bubblewrap present, not turned off)."""
    return os.environ.get("BEAMRAY_POD_NETWORK", "own") != "host" and shutil.which("bwrap") is not None


def _command(entrypoint: tuple[str, ...], socket_dir: str, ports: tuple[int, ...],
             outbound: pod_network.Outbound | None = None, info_fd: int | None = None) -> list[str]:
    bridge = [sys.executable, _BRIDGE, socket_dir, ",".join(map(str, ports)), "--", *entrypoint]
    if not own_network():
        return bridge
    # A pid namespace of its own too (with its /proc): when the container's actor dies, bwrap's
    # --die-with-parent kills the namespace's first process, and with it every process of the pod.
    return ["bwrap", "--unshare-net", "--unshare-pid", "--dev-bind", "/", "/", "--proc", "/proc",
            *(outbound.bwrap_args() if outbound else []), *(["--info-fd", str(info_fd)] if info_fd else []),
            "--die-with-parent", "--", *bridge]


def _port_in_use(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.2)
        return probe.connect_ex(("127.0.0.1", port)) == 0


class PodContainer:
    """One pod container (threaded actor: the reader and the watchdog run beside its methods)."""

    def __init__(self, container_id: str, launch: PodLaunch, entrypoint: tuple[str, ...]) -> None:
        from beamray.runtime import mounts, worker
        from beamray.runtime.container import enter_code, isolate_imports
        from beamray.serve_bridge import port_proxy

        isolate_imports(enter_code(launch.container_code), launch.spec.handler)
        self._registry = port_proxy
        self._id, self._launch, spec = container_id, launch, launch.spec
        self._alias = launch.stub_id if launch.deployment_id else ""
        for port in spec.ports if not own_network() else ():
            if _port_in_use(port):
                raise BeamrayError(f"port {port} of Pod {spec.name or container_id} is already in use on this node "
                                   "(another pod or process listens there); give each pod its own ports")
        identity = {"CONTAINER_ID": container_id, "STUB_ID": launch.stub_id, "STUB_TYPE": "pod/deployment"
                    if launch.deployment_id else "pod", "KEEP_WARM_SECONDS": str(int(spec.serving.keep_warm_seconds))}
        with worker.task_environment(spec.runtime.env, spec.runtime.secrets, identity):
            environment = dict(os.environ)
        # `python` in an entrypoint is the container's Python, as in a Beam image.
        environment["PATH"] = os.path.dirname(sys.executable) + os.pathsep + environment.get("PATH", "")
        environment.setdefault("PYTHONUNBUFFERED", "1")  # its output reaches the log (and the tail) as printed
        self._mounts = mounts.process_mounts(spec.runtime.volumes)
        self._tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.started_at = time.time()
        self._sockets = os.path.join(SOCKETS_ROOT, container_id)
        os.makedirs(self._sockets, mode=0o700, exist_ok=True)
        self._relay: Any = None  # serve_bridge.relay.Relay, once the ports listen
        self._outbound = pod_network.Outbound(self._sockets) if own_network() and pod_network.available() else None
        if self._outbound is not None:
            environment[pod_network.READY_ENV] = self._outbound.ready_file
        info_read, info_write = os.pipe() if own_network() else (None, None)  # bubblewrap reports its pid there
        try:
            self._process = subprocess.Popen(_command(entrypoint, self._sockets, spec.ports, self._outbound, info_write),
                                             cwd=os.getcwd(), env=environment,
                                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                             start_new_session=True, pass_fds=(info_write,) if info_write else ())
        except OSError as exc:
            self._mounts.close()
            if info_read is not None:
                os.close(info_read)
            raise BeamrayError(f"Pod {spec.name or container_id}: cannot start entrypoint {list(entrypoint)}: "
                               f"{exc.strerror or exc}") from None
        finally:
            if info_write is not None:
                os.close(info_write)
        # `container exec` enters the pod's namespaces through this process
        self._namespace_pid = pod_network.namespace_pid(info_read) if info_read is not None else None
        why = self._outbound.attach(self._namespace_pid) if self._outbound else \
            "slirp4netns is not on this node" if own_network() else ""
        if why:
            self._tail.append(f"beamray: this pod has no outbound network ({why})")
            print(self._tail[-1], flush=True)
        self._status, self._exit_code, self._ended_at = "PENDING", None, 0.0
        self._last_activity, self._busy, self._busy_at = time.monotonic(), False, 0.0
        self._host = ray.util.get_node_ip_address()
        self._lock = threading.Lock()
        threading.Thread(target=self._read_output, name="pod-output", daemon=True).start()
        threading.Thread(target=self._watch, name="pod-watchdog", daemon=True).start()

    def _read_output(self) -> None:
        assert self._process.stdout is not None
        for raw in iter(self._process.stdout.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            self._tail.append(line)
            print(line, flush=True)  # the actor's log: `beamray logs --container-id` reads it

    def _socket(self, port: int) -> str:
        return os.path.join(self._sockets, f"{port}.sock")

    def _ports_ready(self) -> bool:
        return all(os.path.exists(self._socket(port)) for port in self._launch.spec.ports)

    def _watch(self) -> None:
        keep_warm = self._launch.spec.serving.keep_warm_seconds
        while True:
            code = self._process.poll()
            now = time.monotonic()
            with self._lock:
                if code is not None and self._status not in TERMINAL:
                    self._finish("COMPLETE" if code == 0 else "FAILED", code)
                elif self._status == "PENDING" and self._ports_ready():
                    self._register()  # first: whoever sees RUNNING (wait_ready) looks the container up next
                    self._status, self._last_activity = "RUNNING", now
                elif self._status == "RUNNING" and keep_warm >= 0:
                    busy = self._busy and now - self._busy_at < BUSY_STALE_S
                    if not busy and now - self._last_activity >= keep_warm:
                        self._stop_process()
                        self._finish("STOPPED", self._process.returncode)
                if self._status == "STOPPED" or (self._status in TERMINAL and now - self._ended_at > EXITED_LINGER_S):
                    break
            time.sleep(0.01 if self._status == "PENDING" else 0.25)
        self._end_actor()

    def _register(self) -> None:
        """Reachable: through the sockets on this node, through a relay from the others."""
        from beamray.serve_bridge.relay import Relay

        ports = self._launch.spec.ports
        sockets = {port: self._socket(port) for port in ports}
        self._relay = Relay(self._host, sockets)
        self._registry.register(self._id, self._host, ports, self._launch.spec.serving.authorized, alias=self._alias,
                                sockets=sockets, node_id=ray.get_runtime_context().get_node_id(),
                                relays=self._relay.addresses, relay_key=self._relay.key)

    def _finish(self, status: str, code: int | None) -> None:
        self._status, self._exit_code, self._ended_at = status, code, time.monotonic()
        # An exited entrypoint keeps its alias while it lingers, so the next request can stop it first.
        self._registry.unregister(self._id, alias=self._alias if status == "STOPPED" else "")
        self._mounts.close()
        for way_in in (self._outbound, self._relay):
            if way_in is not None:
                way_in.close()
        shutil.rmtree(self._sockets, ignore_errors=True)

    def _stop_process(self) -> None:
        if self._process.poll() is None:
            try:
                os.killpg(self._process.pid, signal.SIGTERM)
                self._process.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait()
            except ProcessLookupError:
                pass

    def _end_actor(self) -> None:
        self._registry.unregister(self._id, alias=self._alias)
        ray.kill(ray.get_runtime_context().current_actor, no_restart=True)

    def heartbeat(self, busy: bool) -> None:
        """A proxy saw traffic (``busy``: connections are open): the idle clock starts again."""
        now = time.monotonic()
        self._last_activity, self._busy, self._busy_at = now, busy, now

    def wait_ready(self, timeout: float) -> dict[str, Any]:
        """Block until RUNNING or ended (or ``timeout``); then ``describe()``."""
        deadline = time.monotonic() + timeout
        while self._status == "PENDING" and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.describe()

    def terminate(self) -> dict[str, Any]:
        """Stop the entrypoint (SIGTERM, then SIGKILL after 5 s); the caller kills the actor."""
        with self._lock:
            if self._status not in TERMINAL:
                self._stop_process()
                self._finish("STOPPED", self._process.returncode)
        return self.describe()

    def describe(self) -> dict[str, Any]:
        """What ``container list`` and ``PodInstance.status()`` show."""
        spec = self._launch.spec
        return {"container_id": self._id, "kind": "pod", "deployment": spec.name, "deployment_id":
                self._launch.deployment_id, "version": self._launch.version, "stub_id": self._launch.stub_id,
                "status": self._status, "exit_code": self._exit_code, "started_at": self.started_at,
                "host": self._host, "ports": list(spec.ports), "output_tail": "\n".join(self._tail),
                "keep_warm_seconds": spec.serving.keep_warm_seconds, "pid": os.getpid(),
                "namespace_pid": self._namespace_pid}


_PodActor = ray.remote(PodContainer)
_started: dict[str, Any] = {}  # container id → the handle this process got when it started it


def start(launch: PodLaunch, entrypoint: tuple[str, ...] = ()) -> str:
    """Start a container of ``launch`` (``entrypoint`` overrides the spec's); its container id."""
    container_id = new_container_id(launch.stub_id)
    _started[container_id] = _PodActor.options(
        name=container_id, namespace=cluster.NAMESPACE, lifetime="detached", max_restarts=0, max_concurrency=16,
        **launch.actor_options).remote(
        container_id, launch, entrypoint or launch.spec.entrypoint)
    return container_id


def handle(container_id: str) -> Any:
    """The container's actor handle; None when it has ended."""
    if container_id in _started:
        return _started[container_id]
    try:
        return ray.get_actor(container_id, namespace=cluster.NAMESPACE)
    except ValueError:
        return None


def describe(container_id: str, timeout: float = 30.0) -> dict[str, Any] | None:
    """The container's ``describe()``; None when it has ended."""
    actor = handle(container_id)
    if actor is None:
        return None
    try:
        return ray.get(actor.describe.remote(), timeout=timeout)
    except ray.exceptions.RayActorError:
        _started.pop(container_id, None)
        return None


def wait_ready(container_id: str, timeout: float) -> dict[str, Any]:
    """Block until the container serves its ports or its entrypoint ended; a failed start raises why."""
    actor = handle(container_id)
    if actor is None:
        raise BeamrayError(f"container {container_id} is not running")
    try:
        return ray.get(actor.wait_ready.remote(timeout), timeout=timeout + 60)
    except ray.exceptions.ActorDiedError as exc:
        raise BeamrayError(_died_reason(exc)) from None


def stop(container_id: str) -> dict[str, Any] | None:
    """Stop the entrypoint and end the container; its last ``describe()`` (None when already gone)."""
    actor = handle(container_id)
    if actor is None:
        return None
    try:
        final = ray.get(actor.terminate.remote(), timeout=30)
    except ray.exceptions.RayActorError:
        final = None
    ray.kill(actor, no_restart=True)
    _started.pop(container_id, None)
    return final


def _died_reason(exc: BaseException) -> str:
    """The constructor's own message out of Ray's "actor died" text (a BeamrayError's line)."""
    text = str(exc)
    for line in reversed(text.splitlines()):
        if "BeamrayError:" in line:
            return line.split("BeamrayError:", 1)[1].strip()
    return text.strip().splitlines()[0] if text.strip() else "the pod's container died"
