"""The simulated KubeRay cluster (``beamray cluster up --simulate``): scale-up, scale-down, ``.map`` over nodes.

Figures of the simulation on this machine, not of EKS (k8s/kuberay/README.md says what to expect there).
Each configuration runs in a fresh BEAMRAY_HOME on a cluster shaped as ``tests/simulate/cluster`` (the
test overlay: 1-CPU ``cpu`` nodes, one 2-CPU A10G node, idle timeouts 2 s), side by side with raw Ray on
the same cluster:

- scale-up: ``@function(gpu="A10G")`` ``.remote()`` on a cluster with no A10G node, until the handler
  starts on the new node (the handler reports its start time), against a raw ``@ray.remote`` task asking
  the same resources; trials alternate and each waits for the node to go first;
- scale-down: from that task's end until the node has left ``ray.nodes()`` (idle 60 s / 30);
- ``.map`` throughput: ``--inputs`` calls of a handler sleeping ``--sleep-ms`` over a ``cpu`` group held
  at 1, 2 and 4 nodes (min = max replicas, the GPU groups at 0), beamray ``.map`` against raw Ray tasks;
  calls per second. Simulated nodes share this machine's cores, so calls that sleep show the scaling.

    python benchmarks/bench_simulate.py [--trials 3] [--inputs 120] [--sleep-ms 100] [--json out.json]
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
import yaml

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import function  # noqa: E402  (imports no Ray)

OVERLAY = Path(__file__).resolve().parents[1] / "tests" / "simulate" / "cluster"
A10G = {"num_cpus": 1, "num_gpus": 1, "memory": 128 * 2**20, "resources": {"accelerator_type:A10G": 0.001}}


def _manifest(cpu_nodes: int | None) -> Path:
    """The test overlay's RayCluster; with ``cpu_nodes``, the cpu group held at that size and no other group."""
    from beamray import simulate

    rc = simulate.read_raycluster(OVERLAY)
    if cpu_nodes is not None:  # only the cpu group: the autoscaler would add A10G nodes for CPU demand too
        for group in rc["spec"]["workerGroupSpecs"]:
            size = cpu_nodes if group["groupName"] == "cpu" else 0
            group.update(replicas=size, minReplicas=size, maxReplicas=size)
    path = Path(tempfile.mkdtemp(prefix="bench-sim-")) / "raycluster.yaml"
    path.write_text(yaml.safe_dump(rc))
    return path


def _a10g_nodes() -> list[str]:
    import ray

    return [n["NodeID"] for n in ray.nodes() if n.get("Alive") and "accelerator_type:A10G" in n["Resources"]]


def _wait(predicate, timeout: float = 120.0) -> float:
    start = time.perf_counter()
    while not predicate():
        if time.perf_counter() - start > timeout:
            raise TimeoutError("the simulated cluster did not change in time")
        time.sleep(0.05)
    return time.perf_counter() - start


def _started_at() -> float:
    return time.time()


def _nap(x: int, pause: float) -> int:
    time.sleep(pause)
    return x


def _scaling(trials: int) -> dict[str, Any]:
    import ray

    on_a10g = function(gpu="A10G")(_started_at)
    raw = ray.remote(**A10G)(_started_at)
    cases = {"beamray": on_a10g.remote, "raw_ray": lambda: ray.get(raw.remote())}
    up: dict[str, list[float]] = {name: [] for name in cases}
    down: list[float] = []
    for trial in range(trials):
        for name in (list(cases) if trial % 2 == 0 else list(reversed(cases))):
            _wait(lambda: not _a10g_nodes())
            asked = time.time()
            up[name].append(cases[name]() - asked)
            down.append(_wait(lambda: not _a10g_nodes()))
    return {"scale_up_s": up, "scale_down_s": down}


def _throughput(inputs: int, sleep_ms: int, trials: int) -> dict[str, list[float]]:
    import ray

    args = [(x, sleep_ms / 1000) for x in range(inputs)]
    mapped = function(cpu=1)(_nap)
    raw = ray.remote(**common.RAW_TASK_OPTIONS)(_nap)
    cases = {"beamray": lambda: common.timed(lambda: list(mapped.map(args))),
             "raw_ray": lambda: common.timed(lambda: ray.get([raw.remote(*a) for a in args]))}
    common.warm_up(cases, rounds=1)
    seconds = common.interleaved(cases, trials)
    return {name: [inputs / s for s in values] for name, values in seconds.items()}


def _one(cpu_nodes: int | None, trials: int, inputs: int, sleep_ms: int) -> dict[str, Any]:
    """One configuration on a cluster of its own (this process is its driver); stopped at the end."""
    from beamray import head, simulate

    home = tempfile.mkdtemp(prefix="beamray-bench-")
    os.environ.update(BEAMRAY_HOME=home, BEAMRAY_HTTP_PORT=str(common.free_port()),
                      BEAMRAY_LOCAL_PORT=str(common.free_port()))
    try:
        simulate.start(_manifest(cpu_nodes))
        if cpu_nodes is None:
            return _scaling(trials)
        return {"calls_per_s": _throughput(inputs, sleep_ms, trials)}
    finally:
        head.stop_embedded()


def _child(cpu_nodes: int | None, trials: int, inputs: int, sleep_ms: int) -> dict[str, Any]:
    args = [sys.executable, __file__, "--trials", str(trials), "--inputs", str(inputs), "--sleep-ms", str(sleep_ms),
            "--only", "scaling" if cpu_nodes is None else str(cpu_nodes)]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


@click.command()
@click.option("--trials", default=3, show_default=True)
@click.option("--inputs", default=120, show_default=True, help="Inputs of each .map.")
@click.option("--sleep-ms", default=100, show_default=True, help="What each call sleeps.")
@click.option("--only", hidden=True, help="Run one configuration (scaling | a cpu node count) and print JSON.")
@click.option("--json", "json_path", help="Also write the figures to this file.")
def main(trials: int, inputs: int, sleep_ms: int, only: str | None, json_path: str | None) -> None:
    if only:
        print(json.dumps(_one(None if only == "scaling" else int(only), trials, inputs, sleep_ms)))
        return
    common.header("simulated KubeRay cluster (Ray's autoscaler v2 on fake nodes)", trials,
                  f"overlay {OVERLAY.relative_to(OVERLAY.parents[2])}; map of {inputs} x {sleep_ms} ms")
    scaling = _child(None, trials, inputs, sleep_ms)
    for name, values in scaling["scale_up_s"].items():
        print(f"GPU request -> running on a new A10G node ({name}): median {common.median(values):.2f} s "
              f"({common.fmt_mean_std(values)} s)")
    print(f"idle A10G node -> removed: median {common.median(scaling['scale_down_s']):.2f} s "
          f"(idle timeout 2 s simulated)")
    throughput = {nodes: _child(nodes, trials, inputs, sleep_ms)["calls_per_s"] for nodes in (1, 2, 4)}
    for nodes, sides in throughput.items():
        line = ", ".join(f"{name} {common.median(v):.1f}/s ({common.median(v) / common.median(throughput[1][name]):.2f}x"
                         f" of 1 node)" for name, v in sides.items())
        ratio = common.median(sides["beamray"]) / common.median(sides["raw_ray"])
        print(f".map over {nodes} cpu node(s): {line}; beamray/raw_ray = {ratio:.2f}x")
    common.print_machine(common.machine_info())
    common.write_json(json_path, {"scaling": scaling, "map_calls_per_s": throughput})


if __name__ == "__main__":
    main()
