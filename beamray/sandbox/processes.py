"""The actor's side of a sandbox's processes: the agent pipe, the process table, output as it grows.

One agent per sandbox (``agent.py``); requests go down its stdin, one reader thread takes its replies and
exit events. Output files are read at an offset, so a caller streams stdout/stderr while a process runs.
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from beamray.sandbox.errors import SandboxProcessError

RUNNING, EXITED = "RUNNING", "EXITED"
_READ_CHUNK = 4 << 20
_INLINE_BYTES = 64 << 10


@dataclass
class Process:
    pid: int
    key: str
    args: list[str]
    cwd: str
    env: dict[str, str]
    exit_code: int = -1
    done: threading.Event = field(default_factory=threading.Event)

    def info(self) -> dict[str, Any]:
        return {"pid": self.pid, "args": self.args, "cwd": self.cwd, "env": self.env,
                "exit_code": self.exit_code, "status": EXITED if self.done.is_set() else RUNNING}


class Agent:
    """One running agent and the processes it started."""

    def __init__(self, command: list[str], out_dir: str, cwd: str, env: dict[str, str]) -> None:
        """``env`` is all the agent (and so every process in the sandbox) sees: never the actor's own."""
        self.out_dir = out_dir
        self.proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     cwd=cwd, env=env, text=True, bufsize=1, start_new_session=True)
        self.processes: dict[int, Process] = {}
        self._replies: dict[int, dict[str, Any]] = {}
        self._exits: dict[int, int] = {}
        self._cond = threading.Condition()
        self._next_id = 0
        self._send_lock = threading.Lock()
        ready = self.proc.stdout.readline()
        if not ready:
            raise SandboxProcessError(f"the sandbox could not start: {self.proc.stderr.read().strip()}")
        threading.Thread(target=self._read, name="sandbox-agent", daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            message = json.loads(line)
            with self._cond:
                if "exit" in message:
                    self._exited(message["exit"], message["code"])
                else:
                    self._replies[message["id"]] = message
                self._cond.notify_all()
        with self._cond:  # the agent is gone: nothing it started is alive any more
            for process in self.processes.values():
                if not process.done.is_set():
                    process.exit_code = -9
                    process.done.set()
            self._cond.notify_all()

    def _exited(self, pid: int, code: int) -> None:
        process = self.processes.get(pid)
        if process is None:  # the exit raced the exec reply
            self._exits[pid] = code
            return
        process.exit_code = code
        process.done.set()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            self._next_id += 1
            message["id"] = request_id = self._next_id
        with self._send_lock:
            if not self.alive():
                raise SandboxProcessError("the sandbox is not running (terminated or expired)")
            self.proc.stdin.write(json.dumps(message) + "\n")
            self.proc.stdin.flush()
        with self._cond:
            while request_id not in self._replies:
                if not self.alive():
                    raise SandboxProcessError("the sandbox stopped while starting the process")
                self._cond.wait(1.0)
            reply = self._replies.pop(request_id)
        if "error" in reply:
            raise SandboxProcessError(reply["error"])
        reply["id"] = request_id
        return reply

    def exec(self, args: list[str], cwd: str, env: dict[str, str], stdin: str | None) -> int:
        reply = self._request({"op": "exec", "args": args, "cwd": cwd, "env": env, "stdin": stdin})
        pid = reply["pid"]
        with self._cond:
            process = self.processes[pid] = Process(pid, str(reply["id"]), args, cwd, env)
            if pid in self._exits:
                process.exit_code = self._exits.pop(pid)
                process.done.set()
        return pid

    def get(self, pid: int) -> Process:
        process = self.processes.get(pid) if isinstance(pid, int) and not isinstance(pid, bool) else None
        if process is None:
            raise SandboxProcessError(f"Process with pid {pid!r} not found in this sandbox")
        return process

    def kill(self, pid: int) -> None:
        process = self.get(pid)
        if not process.done.is_set():
            self._request({"op": "kill", "pid": pid})

    def wait(self, pid: int, timeout: float | None) -> int | None:
        """The exit code, or None when ``timeout`` seconds pass first."""
        process = self.get(pid)
        return process.exit_code if process.done.wait(timeout) else None

    def finished_quickly(self, pid: int, within_s: float) -> dict[str, Any]:
        """``{"exit_code", "stdout", "stderr"}`` when ``pid`` ends within ``within_s`` (small output only), else {}."""
        process = self.get(pid)
        if not process.done.wait(within_s):
            return {}
        output = {}
        for stream in ("stdout", "stderr"):
            path = os.path.join(self.out_dir, f"{process.key}.{stream}")
            if os.path.getsize(path) > _INLINE_BYTES:
                return {}
            with open(path, "rb") as handle:
                output[stream] = handle.read().decode(errors="replace")
        return {"exit_code": process.exit_code, **output}

    def read(self, pid: int, stream: str, offset: int, wait_s: float) -> tuple[bytes, bool]:
        """Output of ``stream`` from ``offset`` (waiting up to ``wait_s`` for some) and whether it has ended."""
        process = self.get(pid)
        if stream not in ("stdout", "stderr"):
            raise SandboxProcessError(f"unknown stream {stream!r} (stdout or stderr)")
        path = os.path.join(self.out_dir, f"{process.key}.{stream}")
        deadline = time.monotonic() + wait_s
        while True:
            finished = process.done.is_set()
            with open(path, "rb") as handle:
                handle.seek(offset)
                data = handle.read(_READ_CHUNK)
            if data or finished or time.monotonic() >= deadline:
                return data, finished and len(data) < _READ_CHUNK
            process.done.wait(0.02)

    def stop(self) -> None:
        """Kill the agent's whole sandbox (its pid namespace goes with it)."""
        if self.alive():
            try:
                os.killpg(self.proc.pid, 9)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            pass
