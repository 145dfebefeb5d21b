"""``@function(cpu=…).map`` over N trivial inputs vs raw Ray ``ray.get([f.remote(x) for x in xs])``.

Both sides ask Ray for the same resources (``cpu`` CPUs, 128 MiB), so the throughput ratio measures
beamray's overhead: per-call submission in the driver, the task wrapper in the worker, and ``.map``'s
windowed result streaming. Goal (issue 16): beamray/raw_ray throughput >= 0.9 for ordered ``.map``, on
a warm cluster and on the first map after a fresh head start (``--fresh-trials``: each side's first map
on its own just-started head, in a new BEAMRAY_HOME).

    python benchmarks/bench_function_map.py [--inputs 5000] [--cpu 1] [--trials 5] [--fresh-trials 0] [--json out.json]
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time
from typing import Any, Callable

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import function  # noqa: E402  (imports no Ray)

GOAL = 0.9


def _identity(x):
    return x


def _profile(label: str, run, top: int = 30) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    run()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    click.echo(f"\n-- cProfile, one run, {label} (by own time) --")
    click.echo("\n".join(line for line in text.getvalue().splitlines() if line.strip()))


def _cases(xs: list[int], cpu: float) -> dict[str, Callable[[], float]]:
    """Timed runs of each side: raw Ray fan-out, beamray's ordered and unordered ``.map``."""
    import ray

    raw = ray.remote(**dict(common.RAW_TASK_OPTIONS, num_cpus=cpu))(_identity)
    mapped = function(cpu=cpu)(_identity)

    def run_raw() -> float:
        start = time.perf_counter()
        out = ray.get([raw.remote(x) for x in xs])
        elapsed = time.perf_counter() - start
        assert out == xs
        return elapsed

    def run_map(order_outputs: bool) -> float:
        start = time.perf_counter()
        out = list(mapped.map(xs, order_outputs=order_outputs))
        elapsed = time.perf_counter() - start
        assert (out if order_outputs else sorted(out)) == xs
        return elapsed

    return {"raw_ray": run_raw, "beamray_map": lambda: run_map(True),
            "beamray_map_unordered": lambda: run_map(False)}


def fresh_first_maps(inputs: int, cpu: float, trials: int) -> dict[str, list[float]]:
    """Seconds of the first map on a just-started head: each side on its own fresh cluster, per trial."""
    xs = list(range(inputs))
    seconds: dict[str, list[float]] = {"raw_ray": [], "beamray_map": []}
    for trial in range(trials):
        for name in seconds if trial % 2 == 0 else reversed(list(seconds)):
            with common.isolated_cluster():
                seconds[name].append(_cases(xs, cpu)[name]())
            click.echo(f"fresh trial {trial + 1} {name}: {inputs / seconds[name][-1]:.0f} tasks/s")
    return seconds


def _report(label: str, inputs: int, seconds: dict[str, list[float]]) -> dict[str, Any]:
    throughput = {name: [inputs / s for s in values] for name, values in seconds.items()}
    medians = {name: common.median(values) for name, values in throughput.items()}
    for name, values in throughput.items():
        click.echo(f"{label} {name:24s} median {medians[name]:7.0f} tasks/s  "
                   f"mean±std {common.fmt_mean_std(values, digits=0)}  trials {[round(v) for v in values]}")
    ratios = {name: medians[name] / medians["raw_ray"] for name in medians if name != "raw_ray"}
    for name, ratio in ratios.items():
        paired = common.paired_ratio(throughput[name], throughput["raw_ray"])
        click.echo(common.ratio_line(f"{label} {name}/raw_ray throughput (per-trial {paired:.2f}x)", ratio,
                                     f">= {GOAL}", ratio >= GOAL))
    return {"seconds": seconds, "throughput_median": medians, "ratios": ratios}


@click.command()
@click.option("--inputs", default=5000, show_default=True, help="Inputs per .map call.")
@click.option("--cpu", default=1.0, show_default=True, help="@function(cpu=…) and raw Ray's num_cpus.")
@click.option("--trials", default=7, show_default=True, help="Timed trials per case on a warm cluster (0: none).")
@click.option("--fresh-trials", default=0, show_default=True,
              help="Trials of each side's first map on a just-started head (two head starts per trial).")
@click.option("--warmup", default=2, show_default=True, help="Untimed rounds of every case first.")
@click.option("--profile", is_flag=True, help="After timing, cProfile one run of each case.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(inputs: int, cpu: float, trials: int, fresh_trials: int, warmup: int, profile: bool,
         json_path: str | None) -> None:
    """Throughput of beamray's .map (ordered and unordered) against raw Ray fan-out."""
    machine = common.machine_info()
    common.print_machine(machine)
    payload: dict[str, Any] = {"benchmark": "function_map", "inputs": inputs, "cpu": cpu, "machine": machine,
                               "goal": GOAL}
    if fresh_trials:
        common.header(f"first .map over {inputs} inputs on a fresh head, cpu={cpu:g}", fresh_trials,
                      "each side on its own just-started cluster")
        payload["fresh"] = _report("fresh", inputs, fresh_first_maps(inputs, cpu, fresh_trials))
    if trials:
        with common.isolated_cluster() as state:
            cases = _cases(list(range(inputs)), cpu)
            common.header(f".map over {inputs} trivial inputs vs ray.get([f.remote(x) ...])", trials,
                          f"cluster CPUs {state['cpus']:g}, both sides num_cpus={cpu:g} memory=128MiB")
            common.warm_up(cases, warmup)
            payload["warm"] = _report("warm", inputs, common.interleaved(cases, trials))
            if profile:
                for name, run in cases.items():
                    _profile(name, run)
    machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    common.write_json(json_path, payload)


if __name__ == "__main__":
    main()
