"""``@function(cpu=1).map`` over N trivial inputs vs raw Ray ``ray.get([f.remote(x) for x in xs])``.

Both sides ask Ray for the same resources (1 CPU, 128 MiB), so the throughput ratio measures beamray's
overhead: per-call submission in the driver, the task wrapper in the worker, and ``.map``'s windowed
result streaming. Goal (issue): beamray/raw_ray throughput >= 0.9 for ordered ``.map``.

    python benchmarks/bench_function_map.py [--inputs 5000] [--trials 5] [--json out.json]
"""

from __future__ import annotations

import cProfile
import io
import os
import pstats
import sys
import time

import click

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import common  # noqa: E402
from beamray import function  # noqa: E402  (imports no Ray)

GOAL = 0.9


@function(cpu=1)
def identity(x):
    return x


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


@click.command()
@click.option("--inputs", default=5000, show_default=True, help="Inputs per .map call.")
@click.option("--trials", default=7, show_default=True, help="Timed trials per case.")
@click.option("--warmup", default=2, show_default=True, help="Untimed rounds of every case first.")
@click.option("--profile", is_flag=True, help="After timing, cProfile one run of each case.")
@click.option("--json", "json_path", default=None, help="Also write the figures to this JSON file.")
def main(inputs: int, trials: int, warmup: int, profile: bool, json_path: str | None) -> None:
    """Throughput of beamray's .map (ordered and unordered) against raw Ray fan-out."""
    with common.isolated_cluster() as state:
        import ray

        raw = ray.remote(**common.RAW_TASK_OPTIONS)(_identity)
        xs = list(range(inputs))

        def run_raw() -> float:
            start = time.perf_counter()
            out = ray.get([raw.remote(x) for x in xs])
            elapsed = time.perf_counter() - start
            assert out == xs
            return elapsed

        def run_map(order_outputs: bool) -> float:
            start = time.perf_counter()
            out = list(identity.map(xs, order_outputs=order_outputs))
            elapsed = time.perf_counter() - start
            assert (out if order_outputs else sorted(out)) == xs
            return elapsed

        cases = {"raw_ray": run_raw, "beamray_map": lambda: run_map(True),
                 "beamray_map_unordered": lambda: run_map(False)}
        machine = common.machine_info()
        common.print_machine(machine)
        common.header(f".map over {inputs} trivial inputs vs ray.get([f.remote(x) ...])", trials,
                      f"cluster CPUs {state['cpus']:g}, both sides num_cpus=1 memory=128MiB")
        common.warm_up(cases, warmup)
        seconds = common.interleaved(cases, trials)

        throughput = {name: [inputs / s for s in values] for name, values in seconds.items()}
        medians = {name: common.median(values) for name, values in throughput.items()}
        for name, values in throughput.items():
            click.echo(f"{name:24s} median {medians[name]:7.0f} tasks/s  mean±std {common.fmt_mean_std(values, digits=0)}"
                       f"  wall p50 {common.median(seconds[name]):.2f}s  trials {[round(v) for v in values]}")
        ordered = medians["beamray_map"] / medians["raw_ray"]
        unordered = medians["beamray_map_unordered"] / medians["raw_ray"]
        paired = common.paired_ratio(throughput["beamray_map"], throughput["raw_ray"])
        paired_unordered = common.paired_ratio(throughput["beamray_map_unordered"], throughput["raw_ray"])
        click.echo(f"per-trial ratio, median: ordered {paired:.2f}x, unordered {paired_unordered:.2f}x")
        click.echo(common.ratio_line("beamray/raw_ray throughput", ordered, f">= {GOAL}", ordered >= GOAL))
        click.echo(common.ratio_line("beamray/raw_ray throughput (order_outputs=False)", unordered, f">= {GOAL}",
                                     unordered >= GOAL))
        machine["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
        common.write_json(json_path, {
            "benchmark": "function_map", "inputs": inputs, "trials": trials, "machine": machine,
            "cluster_cpus": state["cpus"], "seconds": seconds, "throughput_median": medians,
            "ratio": ordered, "ratio_unordered": unordered,
            "paired_ratio": paired, "paired_ratio_unordered": paired_unordered, "goal": GOAL, "met": ordered >= GOAL,
        })

        if profile:
            for name, run in cases.items():
                _profile(name, run)


if __name__ == "__main__":
    main()
