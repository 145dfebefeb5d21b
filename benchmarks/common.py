"""Shared helpers for beamray's benchmarks: an isolated cluster, timing, statistics and printing.

Every benchmark runs beamray and raw Ray side by side in one driver, against the same cluster, with
their trials interleaved (A/B/B/A…) so that noise from other work on the machine hits both sides alike.
Only medians over trials are compared.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import click

# What ``@function(cpu=1)`` asks Ray for (beamray.runtime.resources.ray_options): the raw Ray side asks the same.
RAW_TASK_OPTIONS = {"num_cpus": 1, "memory": 128 * 2**20}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def isolated_cluster(cpus: float | None = None, connect: bool = True) -> Iterator[dict[str, Any]]:
    """beamray's embedded head in a fresh BEAMRAY_HOME on free ports, with this process connected as driver.

    ``connect=False`` leaves this process off the cluster (for benchmarks that drive it from subprocesses,
    which inherit BEAMRAY_HOME and so find the same head).

    The driver connects as beamray itself does (``cluster.connect()``), so raw Ray tasks in this driver run
    in the same kind of workers as beamray's. The head is stopped by pid at the end
    (never ``ray stop``, which would kill every Ray cluster on the machine).
    """
    home = Path(tempfile.mkdtemp(prefix="beamray-bench-"))
    for key in ("BEAMRAY_ADDRESS", "RAY_ADDRESS"):
        os.environ.pop(key, None)
    os.environ.update(BEAMRAY_HOME=str(home), BEAMRAY_LOCAL_PORT=str(free_port()),
                      BEAMRAY_HTTP_PORT=str(free_port()), RAY_USAGE_STATS_ENABLED="0")
    if cpus is not None:
        os.environ["BEAMRAY_LOCAL_CPUS"] = f"{cpus:g}"
    from beamray import cluster, head

    started = time.perf_counter()
    try:
        state = head.start_embedded()
        click.echo(f"cluster: embedded head at {state['address']} (BEAMRAY_HOME={home}), "
                   f"started in {time.perf_counter() - started:.1f}s")
        state = dict(state, home=str(home), cpus=head.local_cpus())
        if connect:
            cluster.connect()
            import ray

            state["cpus"] = ray.cluster_resources().get("CPU")
        yield state
    finally:
        if "ray" in sys.modules:
            with contextlib.suppress(Exception):
                sys.modules["ray"].shutdown()
        head.stop_embedded()
        shutil.rmtree(home, ignore_errors=True)


# ---------------------------------------------------------------------------------------------- timing

def timed(func: Callable[[], Any]) -> float:
    """Seconds one call of ``func`` takes (time.perf_counter)."""
    start = time.perf_counter()
    func()
    return time.perf_counter() - start


def warm_up(cases: dict[str, Callable[[], Any]], rounds: int = 2) -> None:
    """Run every case ``rounds`` times, untimed: function export, worker start-up, caches."""
    for _ in range(rounds):
        for run in cases.values():
            run()


def interleaved(cases: dict[str, Callable[[], Any]], trials: int, warm_each: bool = False
                ) -> dict[str, list[Any]]:
    """Run each case once per trial, the order reversed every other trial (A B, B A, A B…).

    ``warm_each`` runs a case once, untimed, right before each timed run: for cases whose warm state
    (worker processes holding resources) the other case's run displaces, so that both are measured warm.
    Returns each case's per-trial results (whatever the case returns).
    """
    results: dict[str, list[Any]] = {name: [] for name in cases}
    names = list(cases)
    for trial in range(trials):
        for name in names if trial % 2 == 0 else reversed(names):
            if warm_each:
                cases[name]()
            results[name].append(cases[name]())
    return results


# -------------------------------------------------------------------------------------------- statistics

def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0–100), linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        raise ValueError("percentile of no values")
    rank = (len(ordered) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerator: Sequence[float], denominator: Sequence[float]) -> float:
    """Median of the per-trial ratios: trials are interleaved, so each pair saw about the same machine load."""
    return statistics.median(n / d for n, d in zip(numerator, denominator))


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def fmt_mean_std(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    mean, std = mean_std([v * scale for v in values])
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


# ---------------------------------------------------------------------------------------------- machine

def machine_info() -> dict[str, Any]:
    from importlib.metadata import version

    mem_kib = 0
    with contextlib.suppress(OSError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    cpu_model = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cores": os.cpu_count(),
        "cpu_model": cpu_model,
        "ram_gib": round(mem_kib / 2**20, 1),
        "python": platform.python_version(),
        "ray": version("ray"),
        "platform": platform.platform(),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def print_machine(info: dict[str, Any]) -> None:
    click.echo(f"machine: {info['cores']} cores ({info['cpu_model']}), {info['ram_gib']} GiB RAM, "
               f"python {info['python']}, ray {info['ray']}, {info['platform']}, "
               f"load {info['loadavg_1m']} (1 min), {info['date']}")


# --------------------------------------------------------------------------------------------- printing

def ratio_line(label: str, ratio: float, goal: str, met: bool) -> str:
    return f"{label} = {ratio:.2f}x (goal {goal}) {'MET' if met else 'MISSED'}"


def header(title: str, trials: int, detail: str) -> None:
    click.echo(f"\n== {title} ==")
    click.echo(f"{detail}; {trials} trials, beamray and raw Ray interleaved (A/B, B/A, ...)")


def write_json(path: str | None, payload: dict[str, Any]) -> None:
    if path:
        Path(path).write_text(json.dumps(payload, indent=2))
        click.echo(f"wrote {path}")



# -------------------------------------------------------------------------------------- web deployments

def double_app() -> Any:
    """The raw side of the web benchmarks: FastAPI, ``POST /`` with ``{"x": …}`` → ``{"result": x * 2}``.

    A plain ``def`` handler, so FastAPI runs it in its thread pool, as beamray runs a sync ``@endpoint``.
    Also the uvicorn factory for the bare-uvicorn baseline (``uvicorn --factory common:double_app``).
    """
    from fastapi import FastAPI

    app = FastAPI()

    @app.post("/")
    def double(body: dict) -> dict:
        return {"result": body["x"] * 2}

    return app


def http_post(url: str, body: bytes = b'{"x": 21}', headers: dict[str, str] | None = None,
              timeout: float = 30.0) -> tuple[int, bytes]:
    """One POST on a fresh connection: (status, body); status 0 when the connection failed."""
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("POST", parts.path or "/", body,
                           {"Content-Type": "application/json", **(headers or {})})
        response = connection.getresponse()
        return response.status, response.read()
    except OSError:
        return 0, b""
    finally:
        connection.close()


def wait_for_200(url: str, headers: dict[str, str] | None = None, timeout: float = 120.0,
                 interval: float = 0.005) -> int:
    """POST ``url`` until it answers 200; returns the number of attempts. Raises TimeoutError."""
    deadline = time.monotonic() + timeout
    attempts = 0
    status = None
    while time.monotonic() < deadline:
        attempts += 1
        status, _ = http_post(url, headers=headers, timeout=max(1.0, deadline - time.monotonic()))
        if status == 200:
            return attempts
        time.sleep(interval)
    raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s (last status {status})")


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway ``redis-server`` (no RDB, no AOF) on a free port; yields its URL."""
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    port = free_port()
    workdir = tempfile.mkdtemp(prefix="beamray-bench-redis-")
    process = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", workdir],
                               stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client, deadline = redis.Redis(port=port), time.monotonic() + 20
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
