"""``SandboxContainer``: one sandbox = one detached, named Ray actor (name = the sandbox id).

The actor holds the sandbox's workspace folder on its node, its agent (``processes.Agent``, inside
bubblewrap where the node isolates) and its TTL. It is detached, so a sandbox outlives the program that
created it; any process reaches it by name (``connect``). It may be started ahead of use by the warm pool
(status ``POOLED``) and becomes a sandbox when ``start`` gives it its settings. ``describe()`` is what
``beamray container list`` shows of every beamray container actor.
"""

from __future__ import annotations

import io
import os
import shutil
import tarfile
import threading
import time
import uuid
from typing import Any

import ray

from beamray.sandbox import isolation, workspaces
from beamray.sandbox.errors import SandboxConnectionError, SandboxProcessError
from beamray.sandbox.fs import Files
from beamray.sandbox.processes import Agent

POOLED, RUNNING, STOPPED = "POOLED", "RUNNING", "STOPPED"
SNAPSHOT_PREFIX = "sandbox-images/"
QUICK_EXIT_S = 0.02
IMAGE_ID_PREFIX = "sandbox-image-"  # Image.from_id(<this>) starts a sandbox from a stored workspace


def sandbox_root() -> str:
    """Where a node keeps its sandboxes' folders (``BEAMRAY_SANDBOX_ROOT``, else under the temp dir)."""
    return os.environ.get("BEAMRAY_SANDBOX_ROOT") or "/tmp/beamray-sandboxes"


class SandboxContainer:
    """The Ray actor behind one sandbox (threaded: calls of one sandbox run concurrently)."""

    def __init__(self, sandbox_id: str) -> None:
        self.sandbox_id = sandbox_id
        self.status = POOLED
        self.created_at = time.time()
        self.started_at: float | None = None
        self.config: dict[str, Any] = {}
        self.ttl = 0.0
        self.last_active = time.monotonic()
        self.ports: list[int] = []
        self.agent: Agent | None = None
        self.folder = os.path.join(sandbox_root(), sandbox_id)
        self.workspace = os.path.join(self.folder, "workspace")
        self.out_dir = os.path.join(self.folder, "out")
        self.files = Files(self._prepare_folders(), sandbox_id)
        self._lock = threading.Lock()
        isolation.probe()  # checked now, so that ``start`` does not pay for it

    def _prepare_folders(self) -> str:
        workspaces.sweep(sandbox_root(), "sandbox-")
        self._owner_lock = workspaces.claim(self.folder)  # held while this process lives
        for path in (self.workspace, self.out_dir):
            os.makedirs(path, exist_ok=True)
            os.chmod(path, 0o755)
            isolation.give_to_sandbox_user(path)
        return self.workspace

    def ready(self) -> bool:
        """The pool's readiness call: also starts the agent for the usual settings (no env, secrets, GPU or
        network block), so that ``start`` finds it running (about 0.1 s saved)."""
        with self._lock:
            if self.agent is None and self.status == POOLED:
                self._start_agent(False)
        return True

    def start(self, config: dict[str, Any]) -> dict[str, Any]:
        """Become the sandbox ``config`` describes: fill the workspace, start the agent, arm the TTL."""
        with self._lock:
            if self.status != POOLED:
                raise SandboxConnectionError(f"sandbox {self.sandbox_id} was started already")
            self.config = config
            custom = config.get("env") or config.get("secrets") or config.get("block_network") or \
                config.get("resources", {}).get("gpu")
            if self.agent is not None and custom:  # the pre-started agent has other settings
                self.agent.stop()
                self.agent = None
            if config.get("snapshot"):
                self._restore(config["snapshot"])
            if self.agent is None:
                self._start_agent(config.get("block_network", False))
            self.ttl = float(config.get("ttl", 600))
            self.started_at = time.time()
            self.status = RUNNING
            self.touch()
        threading.Thread(target=self._expire, name="sandbox-ttl", daemon=True).start()
        return self.describe()

    def _environment(self) -> dict[str, str]:
        env = {"HOME": isolation.WORKSPACE, "PATH": isolation.sandbox_path_env(), "LANG": "C.UTF-8",
               "PYTHONUNBUFFERED": "1", "CONTAINER_ID": self.sandbox_id}
        names = self.config.get("secrets") or []
        if names:
            from beamray import secrets

            env.update(secrets.load_many(tuple(names)))
        if os.environ.get("CUDA_VISIBLE_DEVICES") and self.config.get("resources", {}).get("gpu"):
            env["CUDA_VISIBLE_DEVICES"] = os.environ["CUDA_VISIBLE_DEVICES"]  # the GPUs Ray gave this actor
        env.update(self.config.get("env") or {})
        return env

    def _start_agent(self, block_network: bool) -> None:
        env = self._environment()
        if isolation.probe().mode != "bubblewrap":
            env.update(HOME=self.workspace)
        command = isolation.agent_command(self.workspace, self.out_dir, block_network=block_network, env=env,
                                          gpus=bool(self.config.get("resources", {}).get("gpu")))
        self.agent = Agent(command, self.out_dir, cwd=self.workspace, env=env)
        self.block_network = block_network

    def _restore(self, snapshot_id: str) -> None:
        from beamray import storage

        try:
            blob = storage.get_storage().read_bytes(SNAPSHOT_PREFIX + snapshot_id + ".tar")
        except Exception as exc:
            raise SandboxConnectionError(f"image {snapshot_id!r} cannot be read: {exc}") from None
        with tarfile.open(fileobj=io.BytesIO(blob)) as archive:
            archive.extractall(self.workspace, filter="data")
        for folder, names, files in os.walk(self.workspace):
            for name in names + files:
                isolation.give_to_sandbox_user(os.path.join(folder, name))

    def touch(self) -> None:
        self.last_active = time.monotonic()

    def _expire(self) -> None:
        while self.status == RUNNING:
            if self.ttl > 0 and time.monotonic() - self.last_active > self.ttl:
                self.terminate()
                ray.kill(ray.get_runtime_context().current_actor, no_restart=True)
                return
            time.sleep(0.5)

    def _running(self) -> Agent:
        if self.status != RUNNING or self.agent is None:
            raise SandboxConnectionError(f"sandbox {self.sandbox_id} is {self.status.lower()}")
        self.touch()
        return self.agent

    def describe(self) -> dict[str, Any]:
        """What ``beamray container list`` shows: every beamray container actor answers this."""
        probe = isolation.probe()
        running = sum(1 for p in self.agent.processes.values() if not p.done.is_set()) if self.agent else 0
        return {"container_id": self.sandbox_id, "kind": "sandbox", "status": self.status,
                "created_at": self.created_at, "started_at": self.started_at, "ttl": self.ttl,
                "ports": list(self.ports), "isolation": probe.mode, "isolation_detail": probe.detail,
                "block_network": bool(self.config.get("block_network")), "image": self.config.get("image", ""),
                "resources": self.config.get("resources", {}), "processes_running": running,
                "node_id": ray.get_runtime_context().get_node_id(), "workspace": self.workspace,
                "pid": os.getpid(), "agent_pid": self.agent.proc.pid if self.agent else None}

    # -- processes --------------------------------------------------------------------------------------

    def exec(self, args: list[str], cwd: str | None, env: dict[str, str] | None, stdin: str | None
             ) -> dict[str, Any]:
        """Start a process: ``{"pid"}``, plus its ``exit_code`` and output when it ended within
        ``QUICK_EXIT_S`` (most agent commands do), which saves the caller a ``wait`` and a read."""
        agent = self._running()
        if not args or not all(isinstance(arg, str) for arg in args):
            raise SandboxProcessError(f"exec needs a command and string arguments, got {args!r}")
        cwd = cwd or isolation.WORKSPACE
        if isolation.probe().mode != "bubblewrap":
            cwd = self.files.host("exec", cwd) if cwd.startswith(isolation.WORKSPACE) else cwd
        try:
            pid = agent.exec(list(args), cwd, {str(k): str(v) for k, v in (env or {}).items()}, stdin)
        except SandboxProcessError as exc:
            raise SandboxProcessError(f"exec {' '.join(args)!r} failed: {exc}") from None
        return {"pid": pid, **agent.finished_quickly(pid, QUICK_EXIT_S)}

    def process_info(self, pid: int) -> dict[str, Any]:
        return self._running().get(pid).info()

    def list_processes(self) -> list[dict[str, Any]]:
        return [process.info() for process in self._running().processes.values()]

    def wait_process(self, pid: int, timeout: float | None) -> int | None:
        return self._running().wait(pid, timeout)

    def kill_process(self, pid: int) -> None:
        self._running().kill(pid)

    def read_output(self, pid: int, stream: str, offset: int, wait_s: float = 0.5) -> tuple[bytes, bool]:
        return self._running().read(pid, stream, offset, wait_s)

    # -- files --------------------------------------------------------------------------------------------

    def fs(self, operation: str, *args: Any) -> Any:
        """One ``fs.Files`` operation (``write_bytes``, ``read_bytes``, ``stat``, ``list``, …)."""
        self._running()
        return getattr(self.files, operation)(*args)

    def save_image(self) -> str:
        """Store the workspace as a tar archive; its id is an image the next sandbox starts from."""
        from beamray import storage

        self._running()
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as archive:
            for name in sorted(os.listdir(self.workspace)):
                archive.add(os.path.join(self.workspace, name), arcname=name)
        image_id = f"{IMAGE_ID_PREFIX}{uuid.uuid4().hex}"
        storage.get_storage().write_bytes(SNAPSHOT_PREFIX + image_id + ".tar", buffer.getvalue())
        return image_id

    # -- lifecycle ------------------------------------------------------------------------------------------

    def update_ttl(self, ttl: float) -> None:
        self._running()
        self.ttl = float(ttl)

    def update_network(self, block_network: bool) -> None:
        agent = self._running()
        if block_network == self.block_network:
            return
        if any(not p.done.is_set() for p in agent.processes.values()):
            raise SandboxProcessError("the network can only be changed while no process runs in the sandbox "
                                      "(its processes share one network namespace); kill them first")
        agent.stop()
        self._start_agent(block_network)
        self.config["block_network"] = block_network

    def expose_port(self, port: int) -> None:
        """Register ``port`` with the gateway's port proxy (``serve_bridge.port_proxy``), as pods do."""
        from beamray.serve_bridge import port_proxy

        self._running()
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise SandboxProcessError(f"port must be an integer from 1 to 65535, got {port!r}")
        if self.block_network:
            raise SandboxProcessError("a sandbox with block_network=True has no network the gateway can reach; "
                                      "create it without block_network to expose ports")
        if port not in self.ports:
            self.ports.append(port)
        port_proxy.register(self.sandbox_id, ray.util.get_node_ip_address(), tuple(self.ports),
                            bool(self.config.get("authorized")))

    def heartbeat(self, busy: bool) -> None:
        """The gateway relays a connection to one of its ports: that counts as activity for the TTL."""
        self.touch()

    def terminate(self) -> None:
        """Kill everything in the sandbox and delete its folder; the caller then kills the actor."""
        with self._lock:
            if self.ports:
                from beamray.serve_bridge import port_proxy

                port_proxy.unregister(self.sandbox_id)
            self.status = STOPPED
            if self.agent is not None:
                self.agent.stop()
            shutil.rmtree(self.folder, ignore_errors=True)
