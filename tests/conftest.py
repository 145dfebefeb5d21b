"""One real local Ray cluster for the whole test session, started through beamray's embedded head.

It has 4 logical CPUs and two fake GPUs typed A10G and H100 (Ray logical resources), its own
BEAMRAY_HOME and free ports, so tests never touch a developer's cluster. Subprocesses started by tests
inherit the environment and attach to the same cluster.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest


_CONFORMANCE = Path(__file__).parent / "conformance"
_SIMULATE = Path(__file__).parent / "simulate"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The conformance package runs first, then the simulated KubeRay cluster's, each with its own
    fresh-machine cluster stopped before the next starts (one embedded cluster at a time), then the rest on
    the suite's cluster. In the conformance package, the first-run tests first and the restarts last."""

    def order(item: pytest.Item) -> tuple[int, int]:
        path = Path(str(item.fspath))
        if _SIMULATE in path.parents:
            return (1, 0)
        if _CONFORMANCE not in path.parents:
            return (2, 0)
        return (0, {"test_first_run.py": 0, "test_restarts.py": 2}.get(path.name, 1))

    items.sort(key=order)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def redis_server(folder: Path) -> Iterator[str]:
    """A real throwaway ``redis-server`` on a free loopback port (no persistence); yields its URL."""
    server = shutil.which("redis-server")
    if server is None:
        pytest.skip("redis-server is not installed (.ci/run installs it)")
    port = free_port()
    process = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(folder)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    import redis

    client = redis.Redis(port=port)
    deadline = time.monotonic() + 20
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if time.monotonic() > deadline or process.poll() is not None:
                process.kill()
                raise
            time.sleep(0.05)
    try:
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def clean_environment() -> dict[str, str]:
    """This process's environment without any beamray or Ray address setting: for private clusters."""
    return {key: value for key, value in os.environ.items()
            if not key.startswith("BEAMRAY_") and key != "RAY_ADDRESS"}


@pytest.fixture(scope="session")
def beamray_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("beamray-home")
    for key in ("BEAMRAY_ADDRESS", "RAY_ADDRESS", "BEAMRAY_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(
        BEAMRAY_HOME=str(home),
        BEAMRAY_LOCAL_PORT=str(free_port()),
        BEAMRAY_HTTP_PORT=str(free_port()),
        BEAMRAY_LOCAL_CPUS="4",
        BEAMRAY_LOCAL_GPUS="2",
        BEAMRAY_LOCAL_RESOURCES=json.dumps({"accelerator_type:A10G": 1, "accelerator_type:H100": 1}),
        BEAMRAY_BODY_TIMEOUT_S="5",  # the gateway's 408 test waits for it (30 s by default)
        RAY_USAGE_STATS_ENABLED="0",
        RAY_DEDUP_LOGS="0",
    )
    return home


@pytest.fixture(scope="session")
def ray_cluster(beamray_home: Path):
    """The embedded head, started once; every cluster test shares it."""
    from beamray import cluster, head

    # A run stopped with SIGTERM (e.g. by `timeout`) still tears the cluster down; SIGKILL cannot.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(143))
    state = head.start_embedded()
    cluster.connect()
    yield state
    import ray

    ray.shutdown()
    head.stop_embedded()


@pytest.fixture(scope="module")
def gateway(ray_cluster):
    """An HTTP client for the session cluster's gateway (Serve started), with the bearer token set."""
    import httpx

    from beamray import config, secrets
    from beamray import deploy

    deploy.ensure_serve()
    client = httpx.Client(base_url=f"http://127.0.0.1:{config.http_port()}", timeout=60)
    client.headers["Authorization"] = f"Bearer {secrets.gateway_token()}"
    yield client
    client.close()
