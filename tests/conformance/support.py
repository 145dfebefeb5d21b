"""Helpers the conformance tests share: the gateway client, deployments that clean up after themselves,
task polling, a local webhook receiver, and the program output a user reads.

Everything goes through the ``user`` fixture's ``beamray`` subprocesses and real HTTP, as in conftest.py.
"""

from __future__ import annotations

import contextlib
import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import httpx

from tests.conformance.conftest import wait_for
from tests.test_callbacks import verify_signature  # Beam's docs' code, verbatim

# Statuses after which a task never changes again (Beam's "Querying Task Status"; ERROR is the SDK's FAILED).
TERMINAL = {"COMPLETE", "FAILED", "ERROR", "CANCELLED", "TIMEOUT", "EXPIRED"}

# The GPUs the docs' examples ask for (gpu="A10G" with gpu_count=2, "H100", "T4"), emulated by the embedded
# cluster as Ray logical resources: ``beamray cluster up --gpu A10G:2 --gpu H100 --gpu T4``.
EMULATED_GPUS = {"A10G": 2, "H100": 1, "T4": 1}

# What Ray itself writes to the terminal: forwarded remote stdout "(app:handler pid=123) text" and its
# "(autoscaler +2s) …" / "(raylet) …" notices. A program's own prints have no such prefix.
_RAY_LINE = re.compile(r"^(?:\x1b\[[0-9;]*m)*\((?:[^()]*\bpid=\d+[^()]*|autoscaler\b[^()]*|raylet\b[^()]*)\)")


_clients: dict[tuple[int, str], httpx.Client] = {}


def gateway(user) -> httpx.Client:
    """``user.http()``: the gateway client with the user's token, made once per start of their cluster.

    A restart may move the gateway; the embedded cluster's ``$BEAMRAY_HOME/cluster.json`` changes with it.
    """
    state = user.home / ".beamray" / "cluster.json"
    key = (id(user), state.read_text() if state.exists() else "")
    if key not in _clients:
        _clients[key] = user.http()
    return _clients[key]


def token(user) -> str:
    return gateway(user).headers["Authorization"].removeprefix("Bearer ")


def websocket_url(user, path: str) -> str:
    return str(gateway(user).base_url).rstrip("/").replace("http://", "ws://", 1).replace(
        "https://", "wss://", 1) + path


def program_lines(stdout: str) -> list[str]:
    """What the program itself printed: non-empty lines without Ray's forwarded remote output."""
    return [line for line in stdout.splitlines() if line.strip() and not _RAY_LINE.match(line)]


def run_program(user, app: str, *args: str) -> list[str]:
    """``beamray run app.py ARGS…`` in a fresh copy of ``apps/<app>``; the lines the program printed."""
    return program_lines(user.beamray("run", "app.py", *args, cwd=user.project(app)).stdout)


def remove(user, name: str) -> None:
    """``beamray deployment delete NAME``: frees the CPUs and GPUs its replicas or workers hold."""
    user.beamray("deployment", "delete", name, check=False)


@contextlib.contextmanager
def deployed(user, project: Path, target: str, *extra: str) -> Iterator[dict[str, Any]]:
    """``beamray deploy TARGET --json`` for the duration of a ``with`` block, deleted afterwards.

    Endpoints hold a replica (cpu=1 by default) until deleted, and the embedded cluster of a 2-core
    machine has 4 logical CPUs, so every web deployment is deleted when its test ends; so is anything
    asking for a GPU, which a later restart without that GPU could not bring back (test_restarts.py counts
    those). CPU task queues and functions give their workers back after ``keep_warm_seconds`` and are
    deployed with ``user.deploy``.
    """
    result = user.deploy(project, target, *extra)
    try:
        yield result
    finally:
        remove(user, result["name"])


def enqueue(user, url: str, payload: dict[str, Any] | None = None) -> str:
    """POST to a task queue (or deployed function) URL; Beam answers ``{"task_id": …}``."""
    response = gateway(user).post(url, json=payload or {})
    assert response.status_code == 200, response.text
    body = response.json()
    assert list(body) == ["task_id"], body
    return body["task_id"]


def task(user, task_id: str) -> dict[str, Any]:
    """``GET /v2/task/{id}/`` (Beam's "Querying Task Status")."""
    response = gateway(user).get(f"/v2/task/{task_id}/")
    assert response.status_code == 200, response.text
    return response.json()


def wait_for_status(user, task_id: str, statuses: set[str] | frozenset[str] = frozenset(TERMINAL),
                    timeout: float = 90) -> dict[str, Any]:
    """Poll the task API until the task reaches one of ``statuses`` (by default: any final one)."""
    def reached() -> dict[str, Any] | None:
        found = task(user, task_id)
        return found if found["status"] in statuses else None

    return wait_for(reached, timeout, what=f"task {task_id} to reach {sorted(statuses)}")


def finished(user, task_id: str, timeout: float = 90) -> dict[str, Any]:
    """The task once it has ended, asserted COMPLETE."""
    found = wait_for_status(user, task_id, timeout=timeout)
    assert found["status"] == "COMPLETE", found
    return found


def ensure_emulated_gpus(user) -> None:
    """Make the user's embedded cluster advertise the docs' GPU types (A10G, H100, T4).

    A cluster not running yet is started with them; one running without them (test_first_run.py needs a
    machine without a T4, and a restart may drop them) is restarted with them, and ``cluster up`` brings
    its running deployments back. Costs one ``cluster status`` when they are there already.
    """
    status = json.loads(user.beamray("cluster", "status", "--json").stdout)
    resources = status.get("resources") or {}
    if (status["running"] and resources.get("GPU", 0) >= sum(EMULATED_GPUS.values())
            and all(resources.get(f"accelerator_type:{gpu}", 0) >= count for gpu, count in EMULATED_GPUS.items())):
        return
    if status["running"]:
        user.beamray("cluster", "down")
    flags = [flag for gpu, count in EMULATED_GPUS.items() for flag in ("--gpu", f"{gpu}:{count}")]
    user.beamray("cluster", "up", *flags)


def point_at(project: Path, docs_url: str, url: str) -> None:
    """Replace the docs' webhook URL (webhook.site, your-server.io) in the project's app.py by ``url``."""
    app = project / "app.py"
    source = app.read_text()
    assert docs_url in source, f"{docs_url} not in {app}"
    app.write_text(source.replace(docs_url, url))


class CallbackReceiver:
    """A local HTTP server standing in for the docs' webhook.site: records every POST, answers 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        received = self.requests

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                received.append({"path": self.path, "body": body,
                                 "headers": {key.lower(): value for key, value in self.headers.items()}})
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/beam-callback"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "CallbackReceiver":
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self._server.shutdown()
        self._server.server_close()

    def first(self, timeout: float = 30) -> dict[str, Any]:
        return wait_for(lambda: self.requests, timeout, what=f"a callback POST to {self.url}")[0]


def signing_key(user) -> str:
    """The cluster's callback signing key (Beam's dashboard "signature token"): ``$BEAMRAY_HOME/signing_key``."""
    return (user.home / ".beamray" / "signing_key").read_text().strip()


def check_callback(user, request: dict[str, Any], status: str = "COMPLETE") -> str:
    """A callback as "Task Callbacks" describes it: headers, a fresh timestamp, a valid signature; its task id."""
    headers = request["headers"]
    assert headers["x-task-status"] == status, headers
    timestamp = int(headers["x-task-timestamp"])
    assert abs(time.time() - timestamp) < 60, headers  # "if the timestamp is over 5s old…": generous here
    verify_signature(request["body"], signing_key(user), timestamp, headers["x-task-signature"])
    assert headers["x-task-id"], headers
    return headers["x-task-id"]
