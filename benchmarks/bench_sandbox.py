"""Sandboxes: create → first exec, exec round trip against raw Ray, and what an idle sandbox costs.

On one isolated embedded cluster:

- create → first ``exec("true")`` completed, p50/p99: warm (the pool has an actor of that shape: each
  trial waits until the pool refilled, untimed) and cold (a shape never seen, so a new actor starts).
  Goals (issue 14): warm <= 0.5 s, cold <= 2 s on a 2-core machine.
- ``exec("true")`` + ``wait()`` round trip, p50: ``sb.process.exec("true").wait()`` (bubblewrap,
  unprivileged user) against a raw Ray actor running ``subprocess.run(["true"])``. Goal <= 1.5x.
- idle sandboxes: N created and left idle; the proportional memory (PSS) of each one's actor worker plus its
  bwrap/agent processes, and how many would fit in this machine's memory at that cost.
- concurrency: S sandboxes x M execs each from S threads, every exec reading its own file (no cross-talk).

    python benchmarks/bench_sandbox.py [--trials 20] [--execs 200] [--idle 10] [--sandboxes 20 --calls 50]
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import Sandbox  # noqa: E402  (imports no Ray)

EXEC_GOAL, WARM_GOAL_S, COLD_GOAL_S = 1.5, 0.5, 2.0


class RawRunner:
    """The raw side: one Ray actor that runs a command with ``subprocess.run``."""

    def run(self, args: list[str]) -> int:
        return subprocess.run(args).returncode


def _pss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        return next(int(line.split()[1]) for line in handle if line.startswith("Pss:"))


def _tree(pid: int) -> list[int]:
    children = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as handle:
            children += [int(child) for child in handle.read().split()]
    return [pid] + [grand for child in children for grand in _tree(child)]


def _pool_ready(shape_memory: int) -> None:
    """Wait (untimed) until the warm pool holds a sandbox of this shape."""
    import ray

    from beamray import cluster
    from beamray.sandbox.pool import POOL_NAME

    pool = ray.get_actor(POOL_NAME, namespace=cluster.NAMESPACE)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any(ray.get(pool.size.remote()).values()):
        time.sleep(0.05)


def _create_and_exec(memory: int) -> float:
    start = time.perf_counter()
    sb = Sandbox(cpu=0.1, memory=memory).create()
    assert sb.process.exec("true").wait() == 0
    elapsed = time.perf_counter() - start
    sb.terminate()
    return elapsed


def _summary(name: str, values: list[float], scale: float = 1e3, unit: str = "ms") -> dict[str, float]:
    p50, p99 = common.percentile(values, 50) * scale, common.percentile(values, 99) * scale
    click.echo(f"{name:34s} p50 {p50:8.2f} {unit}  p99 {p99:8.2f} {unit}  (n={len(values)})")
    return {"p50": p50, "p99": p99}


@click.command()
@click.option("--trials", default=20, help="create → first exec trials, warm and cold each")
@click.option("--execs", default=200, help="exec round trips per side")
@click.option("--idle", default=10, help="idle sandboxes to measure")
@click.option("--sandboxes", default=20, help="concurrent sandboxes")
@click.option("--calls", default=50, help="exec calls per concurrent sandbox")
@click.option("--json", "json_path", default=None)
def main(trials: int, execs: int, idle: int, sandboxes: int, calls: int, json_path: str | None) -> None:
    """Sandbox create / exec latency against raw Ray, and idle density."""
    # Logical CPUs beyond the 2 cores: N sandboxes of cpu=0.1 (Beam's minimum) each hold 0.1 of one.
    with common.isolated_cluster(cpus=max(8.0, 0.1 * (sandboxes + idle) + 2)) as state:
        import ray

        machine = common.machine_info()
        common.print_machine(machine)
        results: dict[str, object] = {"cluster_cpus": state["cpus"], "machine": machine}

        common.header("create → first exec(\"true\") completed", trials, "cpu=0.1 sandboxes, pool per shape")
        _create_and_exec(64)  # the pool actor, Ray's function export
        warm = []
        for _ in range(trials):
            _pool_ready(64)
            warm.append(_create_and_exec(64))
        cold = [_create_and_exec(65 + trial) for trial in range(trials)]  # a new shape each time: no pool
        results["create_warm_ms"] = _summary("create→exec, warm pool", warm)
        results["create_cold_ms"] = _summary("create→exec, cold (new actor)", cold)
        click.echo(common.ratio_line("warm p50 (s)", results["create_warm_ms"]["p50"] / 1e3, f"<= {WARM_GOAL_S}",
                                     results["create_warm_ms"]["p50"] / 1e3 <= WARM_GOAL_S))
        click.echo(common.ratio_line("cold p50 (s)", results["create_cold_ms"]["p50"] / 1e3, f"<= {COLD_GOAL_S}",
                                     results["create_cold_ms"]["p50"] / 1e3 <= COLD_GOAL_S))

        common.header("exec(\"true\") round trip", 1, f"{execs} sequential calls per side, interleaved halves")
        sb = Sandbox(cpu=0.1, memory=64).create()
        raw = ray.remote(num_cpus=0.1, memory=64 * 2**20)(RawRunner).remote()
        ray.get(raw.run.remote(["true"]))

        def ours() -> list[float]:
            return [common.timed(lambda: sb.process.exec("true").wait()) for _ in range(execs // 2)]

        def theirs() -> list[float]:
            return [common.timed(lambda: ray.get(raw.run.remote(["true"]))) for _ in range(execs // 2)]

        common.warm_up({"beamray": ours, "raw_ray": theirs}, rounds=1)
        samples = common.interleaved({"beamray": ours, "raw_ray": theirs}, 2)
        mine = _summary("beamray sb.process.exec().wait()", [v for t in samples["beamray"] for v in t])
        base = _summary("raw Ray actor subprocess.run", [v for t in samples["raw_ray"] for v in t])
        ratio = mine["p50"] / base["p50"]
        click.echo(common.ratio_line("beamray/raw_ray exec p50", ratio, f"<= {EXEC_GOAL}", ratio <= EXEC_GOAL))
        results.update(exec_beamray_ms=mine, exec_raw_ms=base, exec_ratio=ratio)
        sb.terminate()
        ray.kill(raw)

        common.header("concurrency", 1, f"{sandboxes} sandboxes x {calls} execs, one thread per sandbox")
        boxes = [Sandbox(cpu=0.1, memory=64).create() for _ in range(sandboxes)]

        def work(index: int) -> bool:
            box = boxes[index]
            box.fs.write_text("mine.txt", str(index))
            outputs = set()
            for _ in range(calls):
                process = box.process.exec("cat", "mine.txt")
                process.wait()
                outputs.add(process.stdout.read())
            return outputs == {str(index)}

        start = time.perf_counter()
        with ThreadPoolExecutor(sandboxes) as executor:
            clean = all(executor.map(work, range(sandboxes)))
        elapsed = time.perf_counter() - start
        click.echo(f"{sandboxes * calls} execs in {elapsed:.2f}s ({sandboxes * calls / elapsed:.0f}/s), "
                   f"no cross-talk: {clean}")
        results["concurrency"] = {"sandboxes": sandboxes, "calls": calls, "seconds": elapsed, "clean": clean}
        for box in boxes:
            box.terminate()

        common.header("idle sandboxes", 1, f"{idle} sandboxes, PSS of actor worker + bwrap/agent")
        idle_boxes = [Sandbox(cpu=0.1, memory=64).create() for _ in range(idle)]
        time.sleep(2)
        costs = []
        for box in idle_boxes:
            info = box._call("describe")
            costs.append(sum(_pss_kib(pid) for pid in _tree(info["pid"])) / 1024)
        per = common.median(costs)
        with open("/proc/meminfo") as handle:
            total_mib = next(int(line.split()[1]) for line in handle if line.startswith("MemTotal:")) / 1024
        click.echo(f"idle sandbox PSS median {per:.1f} MiB (min {min(costs):.1f}, max {max(costs):.1f}); "
                   f"{total_mib / 1024:.0f} GiB holds about {int(total_mib * 0.8 / per)} at 80% of memory")
        results["idle"] = {"pss_mib_median": per, "pss_mib": costs, "fits_in_80pct": int(total_mib * 0.8 / per)}
        for box in idle_boxes:
            box.terminate()
        common.write_json(json_path, {"benchmark": "sandbox", **results})


if __name__ == "__main__":
    main()
