"""Pods: start to first 200, and proxied request throughput, beamray vs raw Ray side by side.

On one isolated embedded cluster with Serve, the gateway and the pods app already running:

- start: ``Pod(cpu=0.5, ports=[8000], entrypoint=["python", "-m", "http.server", "8000"]).create()`` and
  then GET on its URL until 200, against raw Ray: an actor (``num_cpus=0.5``, the same ``working_dir``)
  that starts the same subprocess on a free port of the host, polled directly until 200. The sides
  alternate (A/B, B/A…); each container is stopped (untimed) before the next trial.
- throughput: ``--clients`` threads GET a small file for ``--seconds`` through the gateway
  (``{gw}/pod/container/{id}/app.py``) and straight at the raw actor's port; requests per second.

Goal (issue): beamray/raw start-to-first-200 <= 1.2.

    python benchmarks/bench_pod.py [--trials 5] [--seconds 5] [--clients 4] [--json out.json]
"""

from __future__ import annotations

import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
from typing import Any
from urllib.parse import urlsplit

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402

GOAL = 1.2
APP = 'from beam import Pod\n\npod = Pod(cpu=0.5, ports=[8000], entrypoint=["python", "-m", "http.server", "8000"])\n'


class RawServer:
    """The raw Ray side: an actor running ``python -m http.server PORT`` in its working directory."""

    def __init__(self, port: int) -> None:
        import subprocess

        self.process = subprocess.Popen([sys.executable, "-m", "http.server", str(port)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait()


def get(url: str, timeout: float = 10.0) -> int:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        connection.request("GET", parts.path or "/")
        response = connection.getresponse()
        response.read()
        return response.status
    except OSError:
        return 0
    finally:
        connection.close()


def until_200(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while get(url) != 200:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not answer 200 within {timeout:g}s")
        time.sleep(0.005)


def throughput(url: str, seconds: float, clients: int) -> float:
    """Requests per second that ``clients`` threads get answered (each a new connection, as http.server wants)."""
    counts = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        while time.monotonic() < stop:
            if get(url) == 200:
                counts[index] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


@click.command()
@click.option("--trials", default=5, show_default=True, help="Start trials per side.")
@click.option("--seconds", default=5.0, show_default=True, help="Seconds of load per throughput side.")
@click.option("--clients", default=4, show_default=True, help="Concurrent clients for the throughput test.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(trials: int, seconds: float, clients: int, json_path: str | None) -> None:
    project = tempfile.mkdtemp(prefix="beamray-bench-pod-")
    with open(os.path.join(project, "app.py"), "w") as file:
        file.write(APP)
    os.chdir(project)
    try:
        with common.isolated_cluster():
            import ray

            from beamray import code, deploy
            from beamray.adapters.pod import Pod
            from beamray.serve_bridge import pod_app

            machine = common.machine_info()
            common.print_machine(machine)
            deploy.ensure_serve()
            pod_app.ensure_running()
            raw_actor = ray.remote(RawServer).options(
                num_cpus=0.5, runtime_env={"working_dir": code.ship(code.package(project))})
            pod = Pod(cpu=0.5, ports=[8000], entrypoint=["python", "-m", "http.server", "8000"])
            live: dict[str, Any] = {}

            def beamray_start() -> float:
                started = time.perf_counter()
                instance = pod.create()
                if not instance.ok:
                    raise click.ClickException(instance.error_msg)
                until_200(instance.url + "/")
                elapsed = time.perf_counter() - started
                live["beamray"] = instance
                return elapsed

            def raw_start() -> float:
                port = common.free_port()
                started = time.perf_counter()
                actor = raw_actor.remote(port)
                until_200(f"http://127.0.0.1:{port}/")
                elapsed = time.perf_counter() - started
                live["raw"] = (actor, port)
                return elapsed

            def stop(side: str) -> None:
                if side == "beamray":
                    live.pop("beamray").terminate()
                else:
                    actor, _ = live.pop("raw")
                    ray.get(actor.stop.remote())
                    ray.kill(actor)

            def trial(side: str, start: Any) -> Any:
                def run() -> float:
                    elapsed = start()
                    stop(side)
                    return elapsed
                return run

            cases = {"raw": trial("raw", raw_start), "beamray": trial("beamray", beamray_start)}
            common.header("pod start until the first HTTP 200", trials, "create() + GET vs actor + subprocess")
            common.warm_up(cases, rounds=1)
            starts = common.interleaved(cases, trials)
            for side, values in starts.items():
                click.echo(f"{side:8s} median {common.median(values):.3f} s  (min {min(values):.3f}, "
                           f"max {max(values):.3f})")
            start_ratio = common.paired_ratio(starts["beamray"], starts["raw"])
            click.echo(common.ratio_line("beamray/raw start-to-first-200 (per-trial ratios, median)",
                                         start_ratio, f"<= {GOAL}", start_ratio <= GOAL))

            beamray_start()
            raw_start()
            proxied_url = live["beamray"].url + "/app.py"
            direct_url = f"http://127.0.0.1:{live['raw'][1]}/app.py"
            common.header("GET a small file, requests/s", 1, f"{clients} clients, {seconds:g}s each")
            throughput(proxied_url, 1.0, clients)  # warm
            direct = throughput(direct_url, seconds, clients)
            proxied = throughput(proxied_url, seconds, clients)
            click.echo(f"direct   {direct:8.0f} req/s  (the raw actor's http.server port)")
            click.echo(f"proxied  {proxied:8.0f} req/s  (through the gateway's /pod route)")
            click.echo(f"proxied/direct throughput: {proxied / direct:.2f}")
            stop("beamray")
            stop("raw")
            common.write_json(json_path, {
                "machine": machine, "trials": trials,
                "start_s": {side: values for side, values in starts.items()}, "start_ratio": start_ratio,
                "throughput_rps": {"direct": direct, "proxied": proxied, "clients": clients},
                "throughput_ratio": proxied / direct})
    finally:
        shutil.rmtree(project, ignore_errors=True)


if __name__ == "__main__":
    main()
