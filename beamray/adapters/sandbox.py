"""Beam's ``Sandbox`` and what it hands back: ``SandboxInstance`` with ``.process`` and ``.fs``.

Kwargs, defaults and method signatures follow the SDK (beta9 0.1.291). Choices where Beam leaves room:

- ``keep_warm_seconds`` (600; -1 = never) counts from the sandbox's last call: any call (exec, fs, status,
  …) restarts it; ``update_ttl(ttl)`` replaces it. A running process alone does not keep a sandbox up.
- ``SandboxInstance.status()`` is ``"RUNNING"`` or ``"STOPPED"``; ``poll()`` the same without raising;
  ``wait(timeout)`` blocks until the sandbox stops (True) or ``timeout`` passes (False).
- ``SandboxProcess.wait(timeout)`` returns the exit code, or -1 while it still runs after ``timeout``;
  ``status()`` is ``(exit_code, "RUNNING" | "EXITED")``. ``run_code(blocking=True)`` returns a
  ``SandboxProcessResponse`` (which also has ``wait()``, returning its exit code, so code written for a
  ``SandboxProcess`` works on it).
- ``.fs`` reaches ``/workspace`` only (relative paths are under it); ``mode`` is permission bits (the
  SDK's default 420 is ``0o644``: pass ``0o755``, not ``755``). ``wait_for`` returns True/False.
- ``allow_list``, ``docker_enabled``, ``use_vm``, ``disks``, ``volumes``, ``sync_local_dir``, ``pool``,
  ``snapshot_memory`` and ``create_from_memory_snapshot`` raise ``UnsupportedFeatureError`` naming what
  they would need.
- Where the node cannot isolate (no bubblewrap), ``create()`` warns, and ``instance.error_msg`` says so.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

from beamray.adapters import parsing
from beamray.adapters.image import Image
from beamray.adapters.types import GpuType
from beamray.adapters.sandbox_fs import (SandboxFileInfo, SandboxFilePosition, SandboxFileSearchMatch,
                                         SandboxFileSearchRange, SandboxFileSearchResult, SandboxFileSystem)
from beamray.exceptions import UnsupportedFeatureError
from beamray.sandbox.errors import SandboxConnectionError, SandboxFileSystemError, SandboxProcessError

__all__ = ["Sandbox", "SandboxInstance", "SandboxProcess", "SandboxProcessManager", "SandboxProcessResponse",
           "SandboxProcessStream", "SandboxFileSystem", "SandboxFileInfo", "SandboxFilePosition",
           "SandboxFileSearchMatch", "SandboxFileSearchRange", "SandboxFileSearchResult", "SandboxProcessError",
           "SandboxConnectionError", "SandboxFileSystemError"]

_IMAGE_ID_PREFIX = "sandbox-image-"


def _client() -> Any:
    from beamray.sandbox import client  # imports Ray: only once a sandbox is used

    return client


def _unsupported(what: str, needs: str) -> UnsupportedFeatureError:
    return UnsupportedFeatureError(f"Sandbox {what} is not supported by beamray: it would need {needs}.")


def _ttl(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (value == -1 or value > 0):
        raise ValueError(f"{name} must be -1 (never expires) or a positive number of seconds, got {value!r}")
    return float(value)


class Sandbox:
    """A sandboxed container for running Python code or arbitrary processes (Beam's ``Sandbox``)."""

    def __init__(self, cpu: Union[int, float, str] = 1.0, memory: Union[int, str] = 128,
                 gpu: Any = GpuType.NoGPU, gpu_count: int = 0, image: Optional[Image] = None,
                 keep_warm_seconds: int = 600, authorized: bool = False, name: Optional[str] = None,
                 volumes: Optional[list] = None, disks: Optional[list] = None, secrets: Optional[List[str]] = None,
                 env: Optional[Dict[str, str]] = None, sync_local_dir: bool = False, block_network: bool = False,
                 allow_list: Optional[List[str]] = None, docker_enabled: bool = False, use_vm: bool = False,
                 ports: Optional[List[int]] = None, pool: Any = None, context: Any = None) -> None:
        # The SDK's mutable defaults (Image(), [], {}) are None here, built inside: same meaning.
        if allow_list:
            raise _unsupported("allow_list", "a per-sandbox egress filter (a network namespace with slirp4netns "
                               "and nftables rules per domain); use block_network=True, or leave the network open")
        for flag, what, needs in ((docker_enabled, "docker_enabled=True", "a nested container runtime on the "
                                   "node (rootless Docker or sysbox) inside each sandbox"),
                                  (use_vm, "use_vm=True", "a microVM runtime (Firecracker, Kata) on the nodes"),
                                  (disks, "disks", "durable per-sandbox block volumes"),
                                  (volumes, "volumes", "Volume mounts inside the bubblewrap root"),
                                  (sync_local_dir, "sync_local_dir=True", "a file sync into /workspace; "
                                   "use sb.fs.upload_file"),
                                  (pool, "pool", "Beam's machine pools; Ray places sandboxes on its nodes")):
            if flag:
                raise _unsupported(what, needs)
        self.cpu = parsing.parse_cpu(cpu) / 1000
        self.memory = parsing.parse_memory(memory)
        self.gpu, self.gpu_count = gpu, parsing.resolve_gpu_count(gpu, gpu_count)
        self.image = image if image is not None else Image()
        self.keep_warm_seconds = _ttl(keep_warm_seconds, "keep_warm_seconds")
        self.authorized, self.name = bool(authorized), name
        self.secrets, self.env = list(secrets or []), dict(env or {})
        self.block_network, self.ports = bool(block_network), list(ports or [])

    def _launch(self) -> tuple[Dict[str, Any], Any, Any]:
        """(the sandbox's settings, its ImageSpec, its ResourceSpec); an image id of a stored workspace
        (``create_image_from_filesystem``) becomes the settings' ``snapshot``."""
        from beamray.specs import ResourceSpec

        spec = self.image.to_spec()
        snapshot = next((d for k, d in spec.build_steps if k == "image_id" and d.startswith(_IMAGE_ID_PREFIX)), None)
        if snapshot:
            spec = dataclasses.replace(spec, build_steps=tuple(
                step for step in spec.build_steps if step != ("image_id", snapshot)))
        shape = ResourceSpec(cpu=self.cpu, memory_mib=self.memory, gpu=parsing.parse_gpu(self.gpu),
                             gpu_count=self.gpu_count)
        config = {"env": {**dict(spec.env_vars), **self.env}, "secrets": self.secrets,
                  "block_network": self.block_network, "ttl": self.keep_warm_seconds, "snapshot": snapshot,
                  "image": snapshot or (",".join(spec.python_packages) or "default"),
                  "resources": {"cpu": self.cpu, "memory": self.memory, "gpu": self.gpu_count},
                  "authorized": self.authorized, "name": self.name}
        return config, spec, shape

    def create(self) -> "SandboxInstance":
        """Start the sandbox (a warm one when the pool has one of this shape) and return its handle."""
        sandbox_id, info = _client().create(*self._launch())
        instance = SandboxInstance(container_id=sandbox_id, stub_id=sandbox_id, ok=True)
        if info["isolation"] != "bubblewrap":
            instance.error_msg = f"unisolated: {info['isolation_detail']}"
            print(f"Warning: sandbox {sandbox_id} is {instance.error_msg}", file=sys.stderr)
        for port in self.ports:
            instance.expose_port(port)
        return instance

    def connect(self, id: str) -> "SandboxInstance":
        """The running sandbox ``id`` (from any process); ``SandboxConnectionError`` when it is gone."""
        if not _client().is_running(id):
            _client().handle(id)  # raises the clear error for a malformed or unknown id
            raise SandboxConnectionError(f"sandbox {id} is not running")
        return SandboxInstance(container_id=id, stub_id=id, ok=True)

    def debug(self) -> "SandboxInstance":
        """Create the sandbox and print how to reach it."""
        instance = self.create()
        print(f"Sandbox {instance.sandbox_id()} is running; Sandbox().connect({instance.sandbox_id()!r}) "
              "reaches it from any program")
        return instance

    def create_from_memory_snapshot(self, snapshot_id: str) -> "SandboxInstance":
        raise _unsupported("create_from_memory_snapshot", "process checkpoint/restore (CRIU) on the nodes")


class SandboxInstance:
    """A running sandbox: processes (``.process``), files (``.fs``), ports, lifetime."""

    def __init__(self, container_id: str, stub_id: str, ok: bool = False, error_msg: str = "") -> None:
        self.container_id, self.stub_id, self.ok, self.error_msg = container_id, stub_id, ok, error_msg
        self.process = SandboxProcessManager(self)
        self.fs = SandboxFileSystem(self)
        self._urls: Dict[int, str] = {}

    def __repr__(self) -> str:
        return f"SandboxInstance(container_id={self.container_id!r}, ok={self.ok})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SandboxInstance) and other.container_id == self.container_id

    def __enter__(self) -> "SandboxInstance":
        return self

    def __exit__(self, *args: Any) -> None:
        self.terminate()

    def _call(self, method: str, *args: Any) -> Any:
        return _client().call(self.container_id, method, *args)

    def sandbox_id(self) -> str:
        return self.container_id

    def terminate(self) -> bool:
        """Kill everything in the sandbox and delete its files."""
        _client().terminate(self.container_id)
        return True

    def status(self) -> str:
        return self._call("describe")["status"]

    def poll(self) -> str:
        return "RUNNING" if _client().is_running(self.container_id) else "STOPPED"

    def wait(self, timeout: Optional[float] = None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        while _client().is_running(self.container_id):
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(0.5)
        return True

    def update_ttl(self, ttl: int) -> None:
        self._call("update_ttl", _ttl(ttl, "ttl"))

    def update_network_permissions(self, block_network: bool = False, allow_list: Optional[List[str]] = None) -> None:
        if allow_list:
            raise _unsupported("allow_list", "a per-sandbox egress filter; use block_network=True or False")
        self._call("update_network", bool(block_network))

    def create_image_from_filesystem(self) -> str:
        """Store /workspace; ``Sandbox(image=Image.from_id(id))`` starts with those files."""
        return self._call("save_image")

    def snapshot_memory(self) -> str:
        raise _unsupported("snapshot_memory", "process checkpoint/restore (CRIU) on the nodes")

    def expose_port(self, port: int) -> str:
        """A gateway URL (HTTP and WebSocket) that reaches ``port`` inside the sandbox."""
        url = _client().expose_port(self.container_id, port)
        self._urls[port] = url
        return url

    def list_urls(self) -> Dict[int, str]:
        """The exposed ports' URLs (those exposed through this handle, and any others the sandbox has)."""
        for port in self._call("describe")["ports"]:
            self._urls.setdefault(port, _client().expose_port(self.container_id, port))
        return dict(self._urls)


class SandboxProcessStream:
    """Output of a process as it arrives: iterate for lines while it runs; ``read()`` waits for the end."""

    def __init__(self, process: "SandboxProcess", fetch_fn: Callable[[int], Tuple[bytes, bool]]) -> None:
        self.process, self._fetch, self._offset, self._buffer = process, fetch_fn, 0, b""

    def _chunks(self) -> Iterator[bytes]:
        while True:
            data, finished = self._fetch(self._offset)
            self._offset += len(data)
            if data:
                yield data
            if finished:
                return

    def __iter__(self) -> Iterator[str]:
        for data in self._chunks():
            self._buffer += data
            *lines, self._buffer = self._buffer.split(b"\n")
            for line in lines:
                yield line.decode(errors="replace") + "\n"
        if self._buffer:
            tail, self._buffer = self._buffer, b""
            yield tail.decode(errors="replace")

    def read(self) -> str:
        return "".join(self)


def _static(text: str) -> Callable[[int], Tuple[bytes, bool]]:
    data = text.encode()
    return lambda offset: (data[offset:], True)


class SandboxProcess:
    """A process started in the sandbox (``exec`` / ``run_code(blocking=False)``)."""

    def __init__(self, sandbox_instance: SandboxInstance, *, pid: int, cwd: str, args: List[str],
                 env: Dict[str, str], exit_code: int = -1, inline_stdout: str = "", inline_stderr: str = "") -> None:
        self.sandbox_instance, self.pid, self.cwd, self.args, self.env = sandbox_instance, pid, cwd, args, env
        self.exit_code, self.inline_stdout, self.inline_stderr = exit_code, inline_stdout, inline_stderr
        self._ended_early = False  # set by exec when the process ended before exec returned

    def __repr__(self) -> str:
        return f"SandboxProcess(pid={self.pid}, args={self.args!r}, exit_code={self.exit_code})"

    def _fetch(self, stream: str) -> Callable[[int], Tuple[bytes, bool]]:
        if self._ended_early:  # it ended within exec's grace time: its output came back with it
            return _static(self.inline_stdout if stream == "stdout" else self.inline_stderr)
        return lambda offset: self.sandbox_instance._call("read_output", self.pid, stream, offset)

    def wait(self, timeout: Optional[float] = None) -> int:
        if self._ended_early:
            return self.exit_code
        code = self.sandbox_instance._call("wait_process", self.pid, timeout)
        self.exit_code = -1 if code is None else code
        return self.exit_code

    def kill(self) -> None:
        self.sandbox_instance._call("kill_process", self.pid)

    def status(self) -> Tuple[int, str]:
        info = self.sandbox_instance._call("process_info", self.pid)
        self.exit_code = info["exit_code"]
        return info["exit_code"], info["status"]

    @property
    def stdout(self) -> SandboxProcessStream:
        return SandboxProcessStream(self, self._fetch("stdout"))

    @property
    def stderr(self) -> SandboxProcessStream:
        return SandboxProcessStream(self, self._fetch("stderr"))

    @property
    def logs(self) -> SandboxProcessStream:
        """stdout and stderr together, each chunk as it arrives."""
        out, err, offsets = self._fetch("stdout"), self._fetch("stderr"), {"out": 0, "err": 0, "sent": 0}

        def both(offset: int) -> Tuple[bytes, bool]:
            data_out, done_out = out(offsets["out"])
            data_err, done_err = err(offsets["err"]) if not data_out or done_out else (b"", False)
            offsets["out"] += len(data_out)
            offsets["err"] += len(data_err)
            return data_out + data_err, done_out and done_err
        return SandboxProcessStream(self, both)


class SandboxProcessResponse:
    """The result of a blocking ``run_code``: ``pid``, ``exit_code``, ``stdout``/``stderr`` streams, ``result``."""

    def __init__(self, pid: int, exit_code: int, stdout: SandboxProcessStream, stderr: SandboxProcessStream) -> None:
        self.pid, self.exit_code = pid, exit_code
        self._stdout, self._stderr = stdout.read(), stderr.read()
        self.result = self._stdout

    @property
    def stdout(self) -> SandboxProcessStream:
        return SandboxProcessStream(None, _static(self._stdout))  # type: ignore[arg-type]

    @property
    def stderr(self) -> SandboxProcessStream:
        return SandboxProcessStream(None, _static(self._stderr))  # type: ignore[arg-type]

    @classmethod
    def from_output(cls, pid: int, exit_code: int, stdout: str, stderr: str) -> "SandboxProcessResponse":
        return cls(pid, exit_code, SandboxProcessStream(None, _static(stdout)),  # type: ignore[arg-type]
                   SandboxProcessStream(None, _static(stderr)))  # type: ignore[arg-type]

    def wait(self, timeout: Optional[float] = None) -> int:
        return self.exit_code


class SandboxProcessManager:
    """``sb.process``: start processes, find them again."""

    def __init__(self, sandbox_instance: SandboxInstance) -> None:
        self.sandbox_instance = sandbox_instance

    def run_code(self, code: str, blocking: bool = True, cwd: Optional[str] = None,
                 env: Optional[Dict[str, str]] = None) -> Union[SandboxProcessResponse, SandboxProcess]:
        """``python3 -c code``; blocking waits and returns its output."""
        process = self.exec("python3", "-c", code, cwd=cwd or "/workspace", env=env)
        if not blocking:
            return process
        exit_code = process.wait()
        return SandboxProcessResponse.from_output(process.pid, exit_code, process.stdout.read(),
                                                  process.stderr.read())

    def exec(self, *args: str, cwd: str = "/workspace", env: Optional[Dict[str, str]] = None,
             stdin: Optional[str] = None) -> SandboxProcess:
        """Start ``args`` in the sandbox; returns at once (``wait()`` for its end)."""
        started = self.sandbox_instance._call("exec", list(args), cwd, env, stdin)
        process = SandboxProcess(self.sandbox_instance, pid=started["pid"], cwd=cwd, args=list(args),
                                 env=dict(env or {}), exit_code=started.get("exit_code", -1),
                                 inline_stdout=started.get("stdout", ""), inline_stderr=started.get("stderr", ""))
        process._ended_early = "exit_code" in started
        return process

    def _process(self, info: Dict[str, Any]) -> SandboxProcess:
        return SandboxProcess(self.sandbox_instance, pid=info["pid"], cwd=info["cwd"], args=info["args"],
                              env=info["env"], exit_code=info["exit_code"])

    def list_processes(self) -> Dict[int, SandboxProcess]:
        return {info["pid"]: self._process(info) for info in self.sandbox_instance._call("list_processes")}

    def get_process(self, pid: int) -> SandboxProcess:
        return self._process(self.sandbox_instance._call("process_info", pid))
